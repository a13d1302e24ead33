package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PurgeSubject returns the subject filter of the purge service:
// "P.vault.purge.>".
func PurgeSubject(prefix string) string { return prefix + ".vault.purge.>" }

// Key tokens the purge service accepts: a target and a job id of the
// contract's grammars, so no request names a wildcard or another bucket.
var (
	purgeTargetRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	purgeIDRe     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// ServePurge answers P.vault.purge.<target>.<id> by purging the vault key
// <target>.<id> and replying with the stream's PubAck, as a purge published
// on the key's own subject would be answered. It is how an orchestrator in
// an account of its own deletes its vault entries (deploy/nats-accounts.conf
// imports it as $KV.<bucket>.<target>.>): the request's headers never reach
// the stream, so a publisher cannot roll the whole bucket up, or probe other
// keys with expected-sequence headers. The caller unsubscribes on return of
// the subscription's Unsubscribe.
func ServePurge(nc *nats.Conn, js jetstream.JetStream, prefix, bucket string) (*nats.Subscription, error) {
	head := prefix + ".vault.purge."
	subject := "$KV." + bucket + "."
	return nc.QueueSubscribe(PurgeSubject(prefix), "dbusers-vault-purge", func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		target, id, ok := strings.Cut(strings.TrimPrefix(m.Subject, head), ".")
		if !ok || !purgeTargetRe.MatchString(target) || !purgeIDRe.MatchString(id) {
			_ = m.Respond(apiError(400, "a vault key is <target>.<job id>, with no wildcard"))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		msg := nats.NewMsg(subject + wire.VaultKey(target, id))
		msg.Header.Set("KV-Operation", "PURGE")
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			_ = m.Respond(apiError(503, fmt.Sprintf("the purge did not reach the vault: %v", err)))
			return
		}
		data, _ := json.Marshal(ack)
		_ = m.Respond(data)
	})
}

// apiError is a JetStream API error body, which clients read as a failed
// publish.
func apiError(code int, description string) []byte {
	data, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "description": description}})
	return data
}
