package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"cmp"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/wire"
)

// StreamResults is the ResultStore on the results stream.
type StreamResults struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// NewStreamResults returns a ResultStore that publishes through js and
// looks results up in stream (which should allow direct gets).
func NewStreamResults(js jetstream.JetStream, stream jetstream.Stream) *StreamResults {
	return &StreamResults{js: js, stream: stream}
}

// Publish publishes data on subject and waits for the stream's ack.
func (r *StreamResults) Publish(ctx context.Context, subject string, data []byte) error {
	_, err := r.js.Publish(ctx, subject, data)
	return err
}

// PublishNew publishes data on subject only if the stream holds no message
// on it yet (expected last subject sequence 0).
func (r *StreamResults) PublishNew(ctx context.Context, subject string, data []byte) (bool, error) {
	_, err := r.js.Publish(ctx, subject, data, jetstream.WithExpectLastSequencePerSubject(0))
	if storedAlready(err) {
		return true, nil
	}
	return false, err
}

// storedAlready reports whether err is the stream's refusal of an only-new
// publish (WithExpectLastSequencePerSubject(0)): a message is stored on
// the subject already.
func storedAlready(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Lookup returns the result stored on subject, if any.
func (r *StreamResults) Lookup(ctx context.Context, subject string) ([]byte, bool, error) {
	msg, err := r.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return msg.Data, true, nil
}

var _ BatchResults = (*StreamResults)(nil)

// PublishMany publishes every result without waiting for each: all are
// sent, then every ack is awaited, one wait for the batch.
func (r *StreamResults) PublishMany(ctx context.Context, pubs []Publication) ([]bool, []error) {
	exists, errs := make([]bool, len(pubs)), make([]error, len(pubs))
	futures := make([]jetstream.PubAckFuture, len(pubs))
	for i, p := range pubs {
		var opts []jetstream.PublishOpt
		if p.OnlyNew {
			opts = append(opts, jetstream.WithExpectLastSequencePerSubject(0))
		}
		futures[i], errs[i] = r.js.PublishAsync(p.Subject, p.Data, opts...)
	}
	streams.AwaitAcks(ctx, futures, errs)
	for i, err := range errs {
		if futures[i] != nil && pubs[i].OnlyNew && storedAlready(err) {
			exists[i], errs[i] = true, nil
		}
	}
	return exists, errs
}

// LookupMany returns the results stored on subjects in one batched direct
// get ("multi_last", nats-server 2.11 and later). It reads the answers itself and takes
// the last Nats-Subject of each: the server appends its own headers after
// any a publisher stored (ServerHeader).
func (r *StreamResults) LookupMany(ctx context.Context, subjects []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(subjects))
	if len(subjects) == 0 {
		return out, nil
	}
	if len(subjects) == 1 {
		// One subject: a plain direct get, without a subscription of
		// its own (a lone job's latency).
		data, ok, err := r.Lookup(ctx, subjects[0])
		if ok {
			out[subjects[0]] = data
		}
		return out, err
	}
	msgs, err := streams.LastBySubject(ctx, r.js.Conn(), r.stream.CachedInfo().Config.Name, subjects)
	if err != nil {
		return nil, fmt.Errorf("look up %d results: %w", len(subjects), err)
	}
	for subject, msg := range msgs {
		out[subject] = msg.Data
	}
	return out, nil
}

// KVIntents is the Intents record on a key-value bucket.
type KVIntents struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// NewKVIntents returns Intents kept in kv.
func NewKVIntents(js jetstream.JetStream, kv jetstream.KeyValue) *KVIntents {
	return &KVIntents{js: js, kv: kv}
}

var _ BatchIntents = (*KVIntents)(nil)

// PutMany records values under keys in one round of writes.
func (i *KVIntents) PutMany(ctx context.Context, keys, values []string) []error {
	data := make([][]byte, len(values))
	for k, v := range values {
		data[k] = []byte(v)
	}
	return streams.PutAll(ctx, i.js, i.kv.Bucket(), keys, data)
}

// Get returns the job id recorded under key, or "".
func (i *KVIntents) Get(ctx context.Context, key string) (string, error) {
	e, err := i.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// Put records jobID under key.
func (i *KVIntents) Put(ctx context.Context, key, jobID string) error {
	_, err := i.kv.Put(ctx, key, []byte(jobID))
	return err
}

// StreamJobs is JobsStream on the jobs stream.
type StreamJobs struct {
	nc     *nats.Conn
	stream jetstream.Stream
	// direct is the stream's direct-get subject, "$JS.API.DIRECT.GET.<name>".
	direct     string
	prefix     string
	partitions int
}

// NewStreamJobs returns the JobsStream of the jobs stream (which should
// allow direct gets), read over nc; prefix and partitions are the stream's
// (streams.Settings).
func NewStreamJobs(nc *nats.Conn, stream jetstream.Stream, prefix string, partitions int) *StreamJobs {
	return &StreamJobs{nc: nc, stream: stream, direct: "$JS.API.DIRECT.GET." + stream.CachedInfo().Config.Name,
		prefix: prefix, partitions: partitions}
}

var _ StrayStore = (*StreamJobs)(nil)

// Strays returns up to max jobs stored where no consumer reads them
// (streams.ReadByConsumer). The stream's subject list is short (a few
// subjects a target), so listing it is cheap next to a sweep's period.
func (p *StreamJobs) Strays(ctx context.Context, max int) ([]StoredJob, error) {
	info, err := p.stream.Info(ctx, jetstream.WithSubjectFilter(wire.JobsSubject(p.prefix)))
	if err != nil {
		return nil, fmt.Errorf("list the jobs stream's subjects: %w", err)
	}
	var out []StoredJob
	for subject := range info.State.Subjects {
		if streams.ReadByConsumer(p.prefix, subject, p.partitions) {
			continue
		}
		found, err := p.scan(ctx, subject, info.State.FirstSeq, max-len(out))
		if err != nil {
			return out, err
		}
		if out = append(out, found...); len(out) >= max {
			break
		}
	}
	slices.SortFunc(out, func(a, b StoredJob) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// scan reads the jobs stored on exactly subject from sequence from on, up
// to max, with batched direct gets. The subject, used as the filter, may
// match other subjects too (it has wildcard tokens); only its own are kept.
func (p *StreamJobs) scan(ctx context.Context, subject string, from uint64, max int) ([]StoredJob, error) {
	var out []StoredJob
	for len(out) < max {
		req, err := json.Marshal(struct {
			Seq     uint64 `json:"seq"`
			NextFor string `json:"next_by_subj"`
			Batch   int    `json:"batch"`
		}{from, subject, 64})
		if err != nil {
			return out, err
		}
		inbox := p.nc.NewRespInbox()
		sub, err := p.nc.SubscribeSync(inbox)
		if err != nil {
			return out, err
		}
		if err := p.nc.PublishRequest(p.direct, inbox, req); err != nil {
			_ = sub.Unsubscribe()
			return out, err
		}
		last, done := from, false
		for {
			msg, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				_ = sub.Unsubscribe()
				return out, fmt.Errorf("direct get on %s: %w", wire.Quote(subject), err)
			}
			seqText, found := streams.ServerHeader(msg.Header, jetstream.SequenceHeader)
			if !found {
				// 204: end of this batch; 404: nothing more at all.
				status, _ := streams.ServerHeader(msg.Header, "Status")
				done = status != "204" || last == from
				break
			}
			seq, err := strconv.ParseUint(seqText, 10, 64)
			if err != nil {
				_ = sub.Unsubscribe()
				return out, fmt.Errorf("direct get on %s: the server's sequence %q does not parse", wire.Quote(subject), seqText)
			}
			last = seq + 1
			if stored, _ := streams.ServerHeader(msg.Header, jetstream.SubjectHeader); stored == subject && len(out) < max {
				out = append(out, StoredJob{Seq: seq, Subject: stored, Header: msg.Header, Data: msg.Data})
			}
		}
		_ = sub.Unsubscribe()
		if done {
			return out, nil
		}
		from = last
	}
	return out, nil
}

// Erase securely deletes the job at seq.
func (p *StreamJobs) Erase(ctx context.Context, seq uint64) error {
	return p.stream.SecureDeleteMsg(ctx, seq)
}
