// Package wire holds what both sides of the dbusers protocol share: the
// operations, the result and its error codes, the account type, the
// username and password rules, the names of the NATS objects and the
// subjects, and the sealing of passwords. The worker, the Go client and the
// CLI all use it; it imports only the standard library, nkeys and the
// secret package, so a program that sends jobs does not build in the worker.
// docs/protocol.md describes the protocol itself.
package wire
