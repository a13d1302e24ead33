package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// contextFile is where `make run` (scripts/run-dev.sh) writes the settings
// of the worker it starts, relative to the checkout it runs in. The CLI
// reads it from its working directory, so that a first command in another
// terminal of the same checkout needs no flag or export, as a nats CLI
// context does for nats.
const contextFile = "data/cli-context.json"

// cliContext holds defaults for the global flags, below the flags and the
// environment: an explicit --nats-url or DBUSERS_NATS_URL always wins.
type cliContext struct {
	NATSURL string `json:"nats_url"`
	Target  string `json:"target"`
	Prefix  string `json:"prefix"`
	// path is the file the context came from; "" when there is none.
	path string
}

// loadContext reads the context at path. A missing file (or path "") is no
// context and no error; a file that does not parse is an error, since its
// author meant it to be used.
func loadContext(path string) (cliContext, error) {
	if path == "" {
		return cliContext{}, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cliContext{}, nil
	}
	if err != nil {
		return cliContext{}, fmt.Errorf("read %s: %w", path, err)
	}
	var c cliContext
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return cliContext{}, fmt.Errorf("%s is not a dbusers CLI context (%v); remove it, or run make run again to rewrite it", path, err)
	}
	c.path = path
	return c, nil
}

// from reports whether the value of a global flag came from this context:
// neither the flag nor its environment variable was given, and the
// context holds one.
func (c cliContext) from(flagChanged bool, env, value string) bool {
	return c.path != "" && !flagChanged && env == "" && value != ""
}
