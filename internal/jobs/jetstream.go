package jobs

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
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
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return true, nil
	}
	return false, err
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

// KVIntents is the Intents record on a key-value bucket.
type KVIntents struct{ kv jetstream.KeyValue }

// NewKVIntents returns Intents kept in kv.
func NewKVIntents(kv jetstream.KeyValue) *KVIntents { return &KVIntents{kv: kv} }

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
type StreamJobs struct{ stream jetstream.Stream }

// NewStreamJobs returns the JobsStream of the jobs stream (which should
// allow direct gets).
func NewStreamJobs(stream jetstream.Stream) *StreamJobs { return &StreamJobs{stream: stream} }

// Erase securely deletes the job at seq.
func (p *StreamJobs) Erase(ctx context.Context, seq uint64) error {
	return p.stream.SecureDeleteMsg(ctx, seq)
}

// First returns the sequence of the oldest job at or after from on filter.
func (p *StreamJobs) First(ctx context.Context, filter string, from uint64) (uint64, error) {
	msg, err := p.stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(filter))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return msg.Sequence, nil
}
