package jobs_test

// Benchmarks of the worker's hot path without MySQL or NATS: what one job
// costs in CPU and allocations before and after the I/O. make bench's goal
// is at most 100 µs of worker CPU per rotation job, all I/O included
// (docs/benchmarks.md); these are the parts that do not wait.

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/internal/vault"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

const (
	benchPrefix = "dbusers"
	benchJobID  = "job-01hzy3k8q4v7c2m9t5w6x0r1ab"
	benchUser   = "app_user_0042"
)

// replyKey returns a fresh requester curve key and its public key.
func replyKey(b *testing.B) (nkeys.KeyPair, string) {
	b.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		b.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		b.Fatal(err)
	}
	return kp, pub
}

// workerKeys returns a worker key pair in a temporary seed file.
func workerKeys(b *testing.B) *vault.Keys {
	b.Helper()
	k, err := vault.LoadOrCreateKeys(filepath.Join(b.TempDir(), "worker.xk"))
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// BenchmarkDecodeValidate is jobs.Parse on the job bodies of the benchmark
// runs: a reset with a generated password (bulk rotation), a create with a
// chosen sealed password, and a list page.
func BenchmarkDecodeValidate(b *testing.B) {
	_, pub := replyKey(b)
	worker := workerKeys(b)
	requester, reqPub := replyKey(b)
	sealed, err := wire.SealChosenPassword(requester, worker.PublicKey(), benchJobID, secret.New("Chosen-password-0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name, op string
		body     []byte
	}{
		{"reset_generated", "reset_password", fmt.Appendf(nil, `{"id":%q,"username":%q,"reply_key":%q}`, benchJobID, benchUser, pub)},
		{"create_chosen", "create", fmt.Appendf(nil, `{"id":%q,"username":%q,"read_only":true,"reply_key":%q,"password":%q}`, benchJobID, benchUser, reqPub, sealed)},
		{"list_page", "list", fmt.Appendf(nil, `{"id":%q,"after":"app_user_0042","limit":5000}`, benchJobID)},
	}
	for _, c := range cases {
		subject := benchPrefix + ".jobs.my-app.user." + c.op
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, jerr := jobs.Parse(benchPrefix, subject, benchJobID, c.body); jerr != nil {
					b.Fatal(jerr)
				}
				_ = jobs.ResultID(benchJobID, c.body, 1)
			}
		})
	}
}

// BenchmarkGeneratePassword is one generated 64-character password.
func BenchmarkGeneratePassword(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jobs.GeneratePassword(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeResult is the result of a rotation job (with its vault
// secret) and of a full 5,000-account list page.
func BenchmarkEncodeResult(b *testing.B) {
	now := time.Now()
	reset := wire.Result{
		ID: benchJobID, Target: "my-app", Op: wire.OpResetPassword, Status: wire.StatusOK,
		User:     &wire.Account{Username: benchUser},
		Secret:   &wire.Secret{Bucket: "DBUSERS_VAULT", Key: "my-app." + benchJobID, ExpiresAt: now},
		Attempts: 1, CompletedAt: now,
	}
	users := make([]wire.Account, 5000)
	for i := range users {
		users[i] = wire.Account{Username: fmt.Sprintf("app_user_%06d", i), ReadOnly: i%3 == 0}
	}
	list := wire.Result{ID: benchJobID, Target: "my-app", Op: wire.OpList, Status: wire.StatusOK,
		Users: users, Next: users[len(users)-1].Username, Attempts: 1, CompletedAt: now}
	for _, c := range []struct {
		name string
		r    *wire.Result
	}{{"reset", &reset}, {"list_5000", &list}} {
		b.Run(c.name, func(b *testing.B) {
			buf := c.r.AppendJSON(nil)
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				buf = c.r.AppendJSON(buf[:0])
			}
		})
	}
}

// BenchmarkRotationJobCPU is the CPU of one bulk-rotation job outside MySQL
// and NATS, in the worker's order: decode and validate, generate the
// password, seal it to the reply key, encode the result. With one reply key
// for the batch (the bulk rotation's case) and with a fresh one per job
// (the Go client's case).
func BenchmarkRotationJobCPU(b *testing.B) {
	worker := workerKeys(b)
	const subject = benchPrefix + ".jobs.my-app.user.reset_password"
	const keys = 256
	pubs := make([]string, keys)
	for i := range pubs {
		_, pubs[i] = replyKey(b)
	}
	for _, c := range []struct {
		name  string
		fresh bool
	}{{"one_reply_key", false}, {"fresh_reply_keys", true}} {
		b.Run(c.name, func(b *testing.B) {
			bodies := make([][]byte, keys)
			for i := range bodies {
				pub := pubs[0]
				if c.fresh {
					pub = pubs[i]
				}
				bodies[i] = fmt.Appendf(nil, `{"id":%q,"username":%q,"reply_key":%q}`, benchJobID, benchUser, pub)
			}
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				body := bodies[i%keys]
				i++
				job, jerr := jobs.Parse(benchPrefix, subject, benchJobID, body)
				if jerr != nil {
					b.Fatal(jerr)
				}
				pw, err := jobs.GeneratePassword()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := worker.SealPassword(job.ID, pw, job.ReplyKey); err != nil {
					b.Fatal(err)
				}
				res := wire.Result{ID: job.ID, Target: job.Target, Op: job.Op, Status: wire.StatusOK,
					User:     &wire.Account{Username: job.Username},
					Secret:   &wire.Secret{Bucket: "DBUSERS_VAULT", Key: job.Target + "." + job.ID, ExpiresAt: time.Now()},
					Attempts: 1, CompletedAt: time.Now()}
				buf = res.AppendJSON(buf[:0])
			}
		})
	}
}
