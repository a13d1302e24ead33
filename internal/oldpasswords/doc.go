// Package oldpasswords keeps, in NATS, when each old password that a
// reset_password job with keep_old_for retained ends (contract §9), and
// ends it at that time whichever worker process is alive.
//
// The schedule is a key-value bucket (streams.OldPasswordsName), one key
// "<target>.<username>" per account that holds an old password (entry.go).
// The worker writes and reads it through Schedule (schedule.go); every
// process runs an Expirer (expiry.go), which watches the whole bucket and,
// once an entry's time has passed, publishes an ordinary
// discard_old_password job of the target, with a message id that is the
// same in every process so that the jobs stream keeps one copy per
// duplicate window. docs/rotation.md explains it to an operator.
package oldpasswords
