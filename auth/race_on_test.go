//go:build race

package auth

// raceEnabled scales the flood test down under the race detector, which
// makes each map operation several times slower.
const raceEnabled = true
