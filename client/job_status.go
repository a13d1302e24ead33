package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// JobState is where a job is, as the jobs and results streams show it.
type JobState string

// The states of JobStatus.
const (
	// JobQueued: the job is in the jobs stream and no worker has been
	// given it yet (no worker runs, or the target's earlier jobs come
	// first).
	JobQueued JobState = "queued"
	// JobTaken: a worker was given the job and has not answered it: it is
	// running, or being retried (MySQL unreachable or slow, within the
	// worker's retry budget), or was handed back to be given again.
	JobTaken JobState = "taken"
	// JobDone: the job's result is stored in the results stream.
	JobDone JobState = "done"
	// JobUnknown: neither the jobs stream nor the results stream holds the
	// job: it was never accepted, belongs to another target, or was
	// answered so long ago that its result expired (results.max_age).
	JobUnknown JobState = "unknown"
)

// ErrJobStateUnread: the jobs stream or its consumers could not be read
// (a NATS user without that permission, or NATS unreachable), so whether
// a job is queued or taken is not known.
var ErrJobStateUnread = errors.New("the state of the job could not be read")

// JobStatus is what is known of one job.
type JobStatus struct {
	ID     string
	Target string
	State  JobState
	// Op is the job's operation ("user.create", …) when the job or its
	// result was found.
	Op string
	// Result is the stored result of a done job; nil otherwise.
	Result *JobResult
}

// JobResult is a stored result, as JobStatus reports it. A generated
// password is never part of it: it was sealed to the one-time key of the
// call that sent the job, which only that call held.
type JobResult struct {
	// Err is the worker's error; nil when the job succeeded.
	Err *Error
	// Account is the account the job was about (create, reset, delete).
	Account *Account
	// Users is a list job's page.
	Users []Account
	// GeneratedPassword reports that the worker generated the account's
	// password: it is in force, and no one but the call that sent the job
	// can read it. Whoever needs it resets the password.
	GeneratedPassword bool
	// Attempts is the number of tries the worker made.
	Attempts int
	// CompletedAt is when the worker answered.
	CompletedAt time.Time
}

// storedJobResult is the part of a stored result (contract §3) that
// JobStatus reports.
type storedJobResult struct {
	ID     string `json:"id"`
	Op     string `json:"op"`
	Status string `json:"status"`
	Error  *struct {
		Code    Code   `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	User        *Account        `json:"user"`
	Users       []Account       `json:"users"`
	Secret      json.RawMessage `json:"secret"`
	Attempts    int             `json:"attempts"`
	CompletedAt time.Time       `json:"completed_at"`
}

// JobStatus says where the job id of target is: done (with its result),
// taken by a worker, queued, or unknown. It reads the results stream,
// then the jobs stream's pending jobs of the target and the consumer of
// the job's partition; it needs no worker to answer. When the jobs stream
// cannot be read, it returns the status with State JobUnknown and an error
// wrapping ErrJobStateUnread.
func (c *Client) JobStatus(ctx context.Context, target, id string) (JobStatus, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := CheckTarget(target); err != nil {
		return JobStatus{}, err
	}
	if err := checkJobID(id); err != nil {
		return JobStatus{}, err
	}
	st := JobStatus{ID: id, Target: target, State: JobUnknown}
	resultSubject := wire.ResultSubject(c.prefix, target, id)
	if raw, ok := c.storedResult(ctx, resultSubject); ok {
		return st.done(raw)
	}
	state, op, err := c.pendingState(ctx, target, id)
	if err != nil {
		return st, fmt.Errorf("client: job %s: %w: %w", id, ErrJobStateUnread, err)
	}
	if state == JobUnknown {
		// The job may have been answered between the two reads.
		if raw, ok := c.storedResult(ctx, resultSubject); ok {
			return st.done(raw)
		}
	}
	st.State, st.Op = state, op
	return st, nil
}

func (st JobStatus) done(raw []byte) (JobStatus, error) {
	var r storedJobResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return st, fmt.Errorf("client: the result of job %s does not decode: %w", st.ID, err)
	}
	st.State, st.Op = JobDone, r.Op
	st.Result = &JobResult{Account: r.User, Users: r.Users, Attempts: r.Attempts, CompletedAt: r.CompletedAt,
		GeneratedPassword: len(r.Secret) > 0 && string(r.Secret) != "null"}
	if r.Status != "ok" {
		e := &Error{Code: CodeInternal, Message: "the worker answered status " + r.Status + " without an error", JobID: st.ID}
		if r.Error != nil {
			e = &Error{Code: r.Error.Code, Message: r.Error.Message, JobID: st.ID}
		}
		st.Result.Err = e
	}
	return st, nil
}

// pendingState looks for job id among target's jobs in the jobs stream. A
// job there is taken when its partition's consumer has delivered it (its
// sequence is at most the consumer's last delivered one), queued
// otherwise, or when the partition has no consumer. A job answered is no longer there: the stream keeps jobs
// until a worker acknowledges them.
func (c *Client) pendingState(ctx context.Context, target, id string) (JobState, string, error) {
	jobsName, _, _, _ := wire.Names(c.prefix)
	s, err := c.js.Stream(ctx, jobsName)
	if err != nil {
		return JobUnknown, "", fmt.Errorf("jobs stream %s: %w", jobsName, err)
	}
	// Stored as P.jobs.<partition>.<target>.<op…> (the stream's subject
	// transform adds the partition).
	filter := c.prefix + ".jobs.*." + target + ".>"
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return JobUnknown, "", nil
		}
		if err != nil {
			return JobUnknown, "", fmt.Errorf("read the jobs of target %q: %w", target, err)
		}
		seq = m.Sequence + 1
		if !isJob(m, id) {
			continue
		}
		partition, op := partitionAndOp(c.prefix, target, m.Subject)
		info, err := c.js.Consumer(ctx, jobsName, wire.PartitionConsumer(partition))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			// No consumer delivers the partition now (no worker runs, or
			// one is taking the partition over and re-creates it, which
			// delivers its jobs afresh): nobody holds the job.
			return JobQueued, op, nil
		}
		if err != nil {
			return JobUnknown, op, fmt.Errorf("consumer of partition %d: %w", partition, err)
		}
		if info.CachedInfo().Delivered.Stream >= m.Sequence {
			return JobTaken, op, nil
		}
		return JobQueued, op, nil
	}
}

// isJob reports whether a stored job is job id: by its Nats-Msg-Id, as
// this client sends it, or else by the id in its body.
func isJob(m *jetstream.RawStreamMsg, id string) bool {
	if h := m.Header.Get(jetstream.MsgIDHeader); h != "" {
		return h == id
	}
	var body struct {
		ID string `json:"id"`
	}
	return json.Unmarshal(m.Data, &body) == nil && body.ID == id
}

// partitionAndOp reads the partition and the op of a stored job subject,
// P.jobs.<partition>.<target>.<op>.
func partitionAndOp(prefix, target, stored string) (int, string) {
	rest := strings.TrimPrefix(stored, prefix+".jobs.")
	n, after, _ := strings.Cut(rest, ".")
	partition := 0
	_, _ = fmt.Sscanf(n, "%d", &partition)
	return partition, strings.TrimPrefix(after, target+".")
}
