//go:build !unix

package butter

// setNonblock does nothing where workers do not run (they run on Unix).
func setNonblock(int) {}
