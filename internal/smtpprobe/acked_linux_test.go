//go:build linux

package smtpprobe_test

import (
	"net"
	"syscall"
	"time"
	"unsafe"
)

// acked waits until the peer has acknowledged every byte written to c, so that what a
// script sent is in the probe's receive buffer and not in flight, and reports whether
// that happened within d. An ACK is an effect outside this process that the kernel
// announces to nobody: the only way to see it is to poll the unacknowledged bytes of the
// send queue (SIOCOUTQ, tcp(7)) until there are none, with a deadline.
func acked(c *net.TCPConn, d time.Duration) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		var queued int32
		var errno syscall.Errno
		if err := raw.Control(func(fd uintptr) {
			_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&queued)))
		}); err != nil || errno != 0 {
			return false
		}
		if queued == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
