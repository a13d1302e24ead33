package jobs

import (
	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/wire"
)

// The label values an Observer is called with, so that metrics can create
// every series before its first event: an alert rule on a counter finds
// nothing on a healthy worker if the series appears only once it counts.

// The outcomes of Observer.JobDone besides StatusOK and StatusError.
const OutcomeAlreadyDone = "already_done"

// Outcomes returns the outcomes Observer.JobDone is called with.
func Outcomes() []string { return []string{wire.StatusOK, wire.StatusError, OutcomeAlreadyDone} }

// RetryClasses returns the error classes Observer.Retry is called with: a
// permanent error is not retried.
func RetryClasses() []string {
	return []string{mysqlops.Transient.String(), mysqlops.Unknown.String()}
}

// MySQLErrorClasses returns the error classes Observer.MySQLError is
// called with.
func MySQLErrorClasses() []string {
	return []string{mysqlops.Transient.String(), mysqlops.Unknown.String(), mysqlops.Permanent.String()}
}

// HandBackReasons returns the reasons Observer.HandedBack is called with:
// the while-clauses of the worker's hand-backs (TestObserverLabelsAreListed
// keeps this list and the worker's calls the same).
func HandBackReasons() []string {
	return []string{
		"look up an earlier result",
		"stopping or MySQL state not settled",
		"stopping: an earlier job of the target was handed back",
		"publish the result",
		"erase the job's sealed password",
	}
}
