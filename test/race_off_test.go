//go:build !race

package test

// raceDetector says whether the tests run under the race detector, which
// slows every process of the test several times over.
const raceDetector = false
