//go:build race

package gateway_test

// raceEnabled says the race detector is on: the streaming test then
// sends less, since every byte costs far more.
const raceEnabled = true
