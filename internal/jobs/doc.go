// Package jobs owns the job envelope (subject, body, validation), the worker
// that dispatches jobs to MySQL operations, and the results it publishes.
package jobs
