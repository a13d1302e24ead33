package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/dbusers/dbusers/client"
)

// The password prompts, as the platform's CLI words them.
const (
	promptPassword     = "Password (Will be generated if left empty): "
	promptConfirmation = "Password Confirmation: "
	// passwordTries is how many times the prompt is shown before giving up.
	passwordTries = 3
)

// readPassword returns the password to set, "" to have one generated. On a
// terminal it prompts (on stderr) with hidden input and a confirmation,
// with up to 3 tries; otherwise it reads stdin's first line, without
// confirmation.
func (a *app) readPassword() (string, error) {
	if a.term == nil {
		return a.firstLine()
	}
	for try := 1; ; try++ {
		problem, password, err := a.promptOnce()
		if err != nil {
			return "", err
		}
		if problem == "" {
			return password, nil
		}
		fmt.Fprintln(a.err, problem)
		if try == passwordTries {
			return "", failf("No valid password after %d tries: nothing was changed.", passwordTries)
		}
	}
}

// promptOnce asks for the password and its confirmation once. It returns
// what was wrong with them ("" when nothing) and the password.
func (a *app) promptOnce() (problem, password string, err error) {
	fmt.Fprint(a.err, promptPassword)
	if password, err = a.term.ReadPassword(); err != nil {
		return "", "", fail(err, "Cannot read the password: %v.", err)
	}
	if password == "" {
		return "", "", nil
	}
	if err := client.CheckPassword(password); err != nil {
		return sentence(capitalize(passwordProblem(err))), "", nil
	}
	fmt.Fprint(a.err, promptConfirmation)
	confirmation, err := a.term.ReadPassword()
	if err != nil {
		return "", "", fail(err, "Cannot read the password confirmation: %v.", err)
	}
	if confirmation != password {
		return "Password and confirmation do not match.", "", nil
	}
	return "", password, nil
}

// firstLine reads the password from stdin's first line; a missing or
// empty line means "generate one".
func (a *app) firstLine() (string, error) {
	line, err := bufio.NewReader(a.in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fail(err, "Cannot read the password from stdin: %v.", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", nil
	}
	if err := client.CheckPassword(line); err != nil {
		return "", fail(err, "Invalid password: %s", sentence(passwordProblem(err)))
	}
	return line, nil
}

// passwordProblem says what a CheckPassword error found wrong: the length
// (24 to 64) or the position of a forbidden character, never the password.
func passwordProblem(err error) string {
	if ce, ok := errors.AsType[*client.Error](err); ok {
		return ce.Message
	}
	return err.Error()
}
