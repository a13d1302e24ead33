package oldpasswords

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/internal/streams"
)

// Schedule is the worker's jobs.OldPasswordSchedule, kept in a key-value
// bucket (streams.Objects.OldPasswords): one entry per account that holds
// an old password, removed once it ends.
type Schedule struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
	nc *nats.Conn
	// subject heads its keys' subjects, "$KV.<bucket>.".
	subject string
}

var _ jobs.OldPasswordSchedule = (*Schedule)(nil)

// NewSchedule returns the schedule kept in kv, read over js's connection.
func NewSchedule(js jetstream.JetStream, kv jetstream.KeyValue) *Schedule {
	return &Schedule{kv: kv, js: js, nc: js.Conn(),
		subject: "$KV." + kv.Bucket() + "."}
}

// SetMany records ends[i] as usernames[i]'s entry on target, replacing
// any earlier one (an account keeps one old password): every write at
// once, the stream's acks awaited together.
func (s *Schedule) SetMany(ctx context.Context, target string, usernames []string, ends []jobs.OldPasswordEnd) []error {
	errs := make([]error, len(usernames))
	keys := make([]string, 0, len(usernames))
	values := make([][]byte, 0, len(usernames))
	var idx []int
	for i, u := range usernames {
		if !validToken(target) || !validToken(u) {
			errs[i] = fmt.Errorf("old passwords: set: %q.%q is no key", target, u)
			continue
		}
		data, err := encodeValue(ends[i])
		if err != nil {
			errs[i] = err
			continue
		}
		keys, values, idx = append(keys, Key(target, u)), append(values, data), append(idx, i)
	}
	for k, err := range streams.PutAll(ctx, s.js, s.kv.Bucket(), keys, values) {
		if err != nil {
			errs[idx[k]] = fmt.Errorf("old passwords: set %s: %w", keys[k], err)
		}
	}
	return errs
}

// Clear removes username's entry on target. Clearing an absent entry is no
// error.
func (s *Schedule) Clear(ctx context.Context, target, username string) error {
	if !validToken(target) || !validToken(username) {
		return fmt.Errorf("old passwords: clear: %q.%q is no key", target, username)
	}
	if err := s.kv.Purge(ctx, Key(target, username)); err != nil {
		return fmt.Errorf("old passwords: clear %s: %w", Key(target, username), err)
	}
	return nil
}

// Entries returns the entry of each of usernames that has one on target.
// One username is a plain get; more are read in batched direct gets
// (streams.LastBySubject).
func (s *Schedule) Entries(ctx context.Context, target string, usernames []string) (map[string]jobs.OldPasswordEnd, error) {
	out := make(map[string]jobs.OldPasswordEnd)
	if !validToken(target) {
		return nil, fmt.Errorf("old passwords: until: %q is no target", target)
	}
	keys := make([]string, 0, len(usernames))
	seen := make(map[string]struct{}, len(usernames))
	for _, u := range usernames {
		if _, dup := seen[u]; dup {
			continue
		}
		seen[u] = struct{}{}
		if validToken(u) { // any other name can have no entry
			keys = append(keys, Key(target, u))
		}
	}
	if len(keys) == 1 {
		e, err := s.kv.Get(ctx, keys[0])
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("old passwords: get %s: %w", keys[0], err)
		}
		return out, s.add(out, keys[0], e.Value())
	}
	subjects := make([]string, len(keys))
	for i, k := range keys {
		subjects[i] = s.subject + k
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msgs, err := streams.LastBySubject(ctx, s.nc, "KV_"+s.kv.Bucket(), subjects)
	if err != nil {
		return nil, fmt.Errorf("old passwords: %w", err)
	}
	for i, k := range keys {
		// A key's last message is its value, or a delete or purge marker
		// (a header, no value): absent.
		if m, ok := msgs[subjects[i]]; ok && !streams.KVRemoved(m.Header) {
			if err := s.add(out, k, m.Data); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// add puts key's entry into out, by username.
func (s *Schedule) add(out map[string]jobs.OldPasswordEnd, key string, data []byte) error {
	e, err := decodeValue(data)
	if err != nil {
		return fmt.Errorf("old passwords: %s: %w", key, err)
	}
	_, username, _ := splitKey(key)
	out[username] = e
	return nil
}
