//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// stopWithHerald makes stopping herald sub stop cmd and whatever it
// started: cmd runs in a process group of its own, which gets SIGTERM.
// Signalling sh alone would leave the programs it runs behind.
func stopWithHerald(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
}
