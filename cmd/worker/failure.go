package main

import (
	"fmt"
	"io"
	"strings"
)

// startupFailure writes what stopped the worker before it was ready as one
// sentence on stderr, "worker: what: why.", and returns exitStartup. The
// errors of a configuration come one per line (errors.Join); they are
// joined with semicolons so that the sentence stays one line. Nothing here
// goes through the logger: a JSON line with a stack trace answers no
// question an operator with a typo in a file has.
func startupFailure(stderr io.Writer, what string, err error) int {
	msg := "worker: " + what
	if err != nil {
		msg += ": " + oneLine(err.Error())
	}
	fmt.Fprintln(stderr, strings.TrimRight(msg, ". ")+".")
	return exitStartup
}

// oneLine joins the non-empty lines of s with "; ".
func oneLine(s string) string {
	var parts []string
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, strings.TrimRight(line, ".;"))
		}
	}
	return strings.Join(parts, "; ")
}
