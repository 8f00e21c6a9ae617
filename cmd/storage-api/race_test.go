//go:build race

package main

// raceEnabled builds the child server with -race too when the tests run with -race,
// so a data race in the real server under real concurrency fails the test.
const raceEnabled = true
