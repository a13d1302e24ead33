package client

import (
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/workertest"
)

// startFakeWorker runs a stand-in for the worker under the default prefix,
// answering every job with what answer returns, and a Client on it.
func startFakeWorker(t *testing.T, answer func(workertest.Job) workertest.Answer) (*workertest.Worker, *Client) {
	t.Helper()
	w := workertest.Start(t, DefaultPrefix, answer)
	c, err := New(w.Conn, WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return w, c
}
