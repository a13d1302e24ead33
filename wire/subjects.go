package wire

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// PartitionConsumerPrefix starts the durable name of each partition's
// consumer on the jobs stream: "worker-p0", "worker-p1", …
const PartitionConsumerPrefix = "worker-p"

// Names returns the jobs and results stream names and the vault and intents
// bucket names: the upper-cased prefix plus "_JOBS", "_RESULTS", "_VAULT",
// "_INTENTS", as contract §1 says (the intents bucket is this worker's
// addition). A valid prefix (^[A-Za-z0-9_-]+$) needs no
// other mapping: JetStream stream names refuse only whitespace, '.', '*',
// '>', '/' and '\', and bucket names allow [A-Za-z0-9_-], so a '-' is kept.
func Names(prefix string) (jobs, results, vault, intents string) {
	p := strings.ToUpper(prefix)
	return p + "_JOBS", p + "_RESULTS", p + "_VAULT", p + "_INTENTS"
}

// JobsSubject returns the subject filter of all jobs: "P.jobs.>".
func JobsSubject(prefix string) string { return prefix + ".jobs.>" }

// PartitionConsumer returns the durable name of partition n's consumer.
func PartitionConsumer(n int) string { return fmt.Sprintf("%s%d", PartitionConsumerPrefix, n) }

// ResultsSubject returns the subject filter of all results: "P.results.>".
func ResultsSubject(prefix string) string { return prefix + ".results.>" }

// ResultSubject returns the subject of one job's result:
// "P.results.<target>.<id>". The caller passes valid tokens.
func ResultSubject(prefix, target, id string) string {
	return prefix + ".results." + target + "." + id
}

// Partition returns the partition that the jobs of target land in: FNV-1a
// of the target token modulo the partition count, as the stream's
// {{partition}} transform computes it.
func Partition(target string, partitions int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(target))
	return int(h.Sum32() % uint32(partitions))
}
