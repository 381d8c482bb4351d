package harness

import "bytes"

// EchoWasm is a small WASI preview 1 command (about 200 bytes) that
// copies stdin to stdout in 4 KiB reads, assembled here byte by byte so
// that the benchmarks need no toolchain: the "small module" of the wasm
// runtime's targets, against which the Go-built test module (2 MB, a Go
// runtime to start) would measure Go's start, not the runtime's.
func EchoWasm() []byte {
	var m bytes.Buffer
	m.Write([]byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00})
	// Types: 0 = (i32 i32 i32 i32) -> i32 (fd_read, fd_write), 1 = () -> ().
	section(&m, 1, cat([]byte{2}, []byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f}, []byte{0x60, 0, 0}))
	// Imports: fd_read (func 0) and fd_write (func 1).
	section(&m, 2, cat([]byte{2}, imp("wasi_snapshot_preview1", "fd_read"), imp("wasi_snapshot_preview1", "fd_write")))
	// Functions: _start (func 2) of type 1.
	section(&m, 3, []byte{1, 1})
	// Memory: one page of 64 KiB.
	section(&m, 5, []byte{1, 0x00, 1})
	// Exports: memory and _start.
	section(&m, 7, cat([]byte{2}, name("memory"), []byte{0x02, 0}, name("_start"), []byte{0x00, 2}))
	// Code: _start, with one i32 local n:
	//   loop
	//     iovec at 0 = {16, 4096}; fd_read(0, 0, 1, 8); n = load(8)
	//     if n == 0: return
	//     iovec.len = n; fd_write(1, 0, 1, 12)
	//   br loop
	body := cat(
		[]byte{1, 1, 0x7f},                                         // one local of type i32
		[]byte{0x03, 0x40},                                         // loop
		[]byte{0x41, 0, 0x41, 16, 0x36, 2, 0},                      // store(0, 16)
		[]byte{0x41, 4, 0x41, 0x80, 0x20, 0x36, 2, 0},              // store(4, 4096)
		[]byte{0x41, 0, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a},  // drop fd_read(0, 0, 1, 8)
		[]byte{0x41, 8, 0x28, 2, 0, 0x22, 0},                       // n = load(8) (tee)
		[]byte{0x45, 0x04, 0x40, 0x0f, 0x0b},                       // if n == 0 { return }
		[]byte{0x41, 4, 0x20, 0, 0x36, 2, 0},                       // store(4, n)
		[]byte{0x41, 1, 0x41, 0, 0x41, 1, 0x41, 12, 0x10, 1, 0x1a}, // drop fd_write(1, 0, 1, 12)
		[]byte{0x0c, 0},                                            // br 0
		[]byte{0x0b},                                               // end loop
		[]byte{0x0b},                                               // end function
	)
	section(&m, 10, cat([]byte{1}, uleb(uint32(len(body))), body))
	return m.Bytes()
}

func section(m *bytes.Buffer, id byte, content []byte) {
	m.WriteByte(id)
	m.Write(uleb(uint32(len(content))))
	m.Write(content)
}

func imp(module, field string) []byte {
	return cat(name(module), name(field), []byte{0x00, 0}) // a function of type 0
}

func name(s string) []byte { return append(uleb(uint32(len(s))), s...) }

func uleb(v uint32) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
