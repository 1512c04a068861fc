//go:build race

package httpapi

// raceEnabled: the race detector slows prediction ~10×; timing tests skip.
const raceEnabled = true
