package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
)

// profileOnSignals lets a load generator profile exactly the interval it measures:
// SIGUSR1 starts a CPU profile into dir/cpu.pprof, SIGUSR2 stops it and writes where
// the goroutines wait, dir/goroutines.txt. The returned
// function writes the allocation profile, dir/allocs.pprof, and is called on exit.
// Without -profile-dir the signals keep their default action and nothing is written.
func profileOnSignals(dir string) (finish func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var cpu *os.File
		for sig := range sigs {
			switch {
			case sig == syscall.SIGUSR1 && cpu == nil:
				f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
				if err == nil {
					err = pprof.StartCPUProfile(f)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "devserver: cpu profile:", err)
					continue
				}
				cpu = f
			case sig == syscall.SIGUSR2 && cpu != nil:
				pprof.StopCPUProfile()
				cpu.Close()
				cpu = nil
				// Where every goroutine waits at the end of the measured time: a server
				// that is slow without using its CPU is waiting on something.
				if f, err := os.Create(filepath.Join(dir, "goroutines.txt")); err == nil {
					pprof.Lookup("goroutine").WriteTo(f, 1)
					f.Close()
				}
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		f, err := os.Create(filepath.Join(dir, "allocs.pprof"))
		if err == nil {
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "devserver: allocation profile:", err)
		}
	}
}
