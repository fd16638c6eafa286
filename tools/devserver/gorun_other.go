//go:build !linux

package main

// stopWithGoRun does nothing where the kernel cannot signal a parent's exit; build the
// server and run the binary to stop it with SIGTERM there.
func stopWithGoRun() {}
