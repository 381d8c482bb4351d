package fsm

// Waiting returns how many goroutines are blocked in f.WaitIndex.
func Waiting(f *FSM) int {
	f.watch.mu.Lock()
	defer f.watch.mu.Unlock()
	return f.watch.waiting
}
