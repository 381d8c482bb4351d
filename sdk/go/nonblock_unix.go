//go:build unix

package butter

import "syscall"

// setNonblock puts fd in non-blocking mode, so that os.NewFile reads and
// writes it through the runtime's poller. A failure leaves it blocking,
// which still works.
func setNonblock(fd int) { _ = syscall.SetNonblock(fd, true) }
