// Package platformapi serves the hosting platform's database-users HTTP API
// (contract §8) over the dbusers client: the endpoints and bodies the
// platform's own client library (go-scalingo v11) sends and reads, the
// HS256 bearer tokens that say who may manage which database, and the
// mapping of the worker's answers to HTTP statuses.
//
// It is an orchestrator like any other: it holds no MySQL credential and
// reaches the worker only through NATS. A chosen password is sealed to the
// worker before it leaves the process, a generated one is returned in the
// one response that asked for it; neither is logged or kept.
//
// One concept per file: config.go (the YAML file), key.go (the token key
// file), token.go (checking a token), errors.go (worker answers to HTTP),
// bodies.go (the JSON of requests and responses), handlers.go (the
// endpoints), server.go (routing, security headers, request logs).
package platformapi
