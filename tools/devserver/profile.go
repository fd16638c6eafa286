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
// SIGUSR1 starts a CPU profile into dir/cpu.pprof, SIGUSR2 stops it. The returned
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
