//go:build !unix

package main

import "os/exec"

// stopWithHerald leaves cmd to be killed when herald sub stops: without
// process groups there is no asking a command and its children to stop.
func stopWithHerald(*exec.Cmd) {}
