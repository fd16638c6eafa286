//go:build linux && amd64

package powerloss

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// System calls the child is stopped at (x86-64 numbers). Those the tracer does not model
// fail the trace if they touch the root, or always if they cannot be told apart.
const (
	sysWrite         = 1
	sysWritev        = 20
	sysPwrite64      = 18
	sysFsync         = 74
	sysFdatasync     = 75
	sysTruncate      = 76
	sysFtruncate     = 77
	sysRename        = 82
	sysSync          = 162
	sysRenameat      = 264
	sysSyncFileRange = 277
	sysFallocate     = 285
	sysPwritev       = 296
	sysSyncfs        = 306
	sysRenameat2     = 316
	sysCopyFileRange = 326
	sysPwritev2      = 328

	fallocKeepSize = 1    // FALLOC_FL_KEEP_SIZE
	atFDCWD        = -100 // AT_FDCWD
	oAppend        = 0o2000
)

var tracedSyscalls = []uint32{
	sysWrite, sysWritev, sysPwrite64, sysFsync, sysFdatasync, sysTruncate, sysFtruncate,
	sysRename, sysSync, sysRenameat, sysSyncFileRange, sysFallocate, sysPwritev, sysSyncfs,
	sysRenameat2, sysCopyFileRange, sysPwritev2,
}

const (
	ptraceOTraceSysGood = 0x1
	ptraceOTraceClone   = 0x8
	ptraceOTraceSeccomp = 0x80
	ptraceOExitKill     = 0x100000
	ptraceEventClone    = 3
	ptraceEventSeccomp  = 7

	seccompSetModeFilter   = 1
	seccompFilterFlagTsync = 1
	seccompRetTrace        = 0x7ff00000
	seccompRetAllow        = 0x7fff0000
	auditArchX8664         = 0xc000003e
	prSetNoNewPrivs        = 38
	sysSeccomp             = 317

	bpfLdWAbs = 0x20 // BPF_LD | BPF_W | BPF_ABS
	bpfJeqK   = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfRetK   = 0x06 // BPF_RET | BPF_K
)

// handshake is the line Child prints once the filter is in place, so Run knows every
// later write is seen.
const handshake = "powerloss: traced"

type sockFilter struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

type sockFprog struct {
	n      uint16
	filter *sockFilter
}

// Child makes the calling process report its writes and syncs to the tracer started by
// [Run]. Call it first thing in the child, before opening any store; it fails if the
// process is not traced, since the filter would then make every write fail.
func Child() error {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("powerloss: %w", err)
	}
	if bytes.Contains(status, []byte("\nTracerPid:\t0\n")) {
		return errors.New("powerloss: Child called in a process that powerloss.Run did not start")
	}
	n := len(tracedSyscalls)
	prog := []sockFilter{
		{code: bpfLdWAbs, k: 4}, // seccomp_data.arch
		{code: bpfJeqK, jt: 1, jf: 0, k: auditArchX8664},
		{code: bpfRetK, k: seccompRetAllow},
		{code: bpfLdWAbs, k: 0}, // seccomp_data.nr
	}
	for i, nr := range tracedSyscalls {
		prog = append(prog, sockFilter{code: bpfJeqK, jt: uint8(n - i), jf: 0, k: nr})
	}
	prog = append(prog, sockFilter{code: bpfRetK, k: seccompRetAllow}, sockFilter{code: bpfRetK, k: seccompRetTrace})
	fprog := sockFprog{n: uint16(len(prog)), filter: &prog[0]}
	// no_new_privs and the filter are per thread; TSYNC copies both to every thread of
	// the process, and threads started later inherit them.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); errno != 0 {
		return fmt.Errorf("powerloss: prctl(PR_SET_NO_NEW_PRIVS): %w", errno)
	}
	if _, _, errno := syscall.RawSyscall(sysSeccomp, seccompSetModeFilter, seccompFilterFlagTsync,
		uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("powerloss: seccomp: %w", errno)
	}
	runtime.KeepAlive(prog)
	if _, err := os.Stdout.WriteString(handshake + "\n"); err != nil {
		return fmt.Errorf("powerloss: %w", err)
	}
	return nil
}

// Run starts cmd, which must call [Child] first, traces what it does to the files under
// root until it exits, and returns the trace. cmd's standard output is taken for its
// lines; its standard error, if nil, is kept for the error returned when it fails. The
// child is killed if it runs longer than timeout. Run keeps its goroutine on one thread
// while it runs, as ptrace requires.
func Run(cmd *exec.Cmd, root string, timeout time.Duration) (*Trace, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("powerloss: %w", err)
	}
	files, dirs, err := snapshot(root)
	if err != nil {
		return nil, err
	}
	tr := &tracer{
		root:  root,
		trace: &Trace{initFiles: files, initDirs: dirs},
		cur:   map[fileKey][]byte{},
		calls: map[int]*call{},
		// Files a write was in flight to at the child's exit.
		uncertain: map[fileKey]bool{},
	}
	for k, b := range files {
		tr.cur[k] = bytes.Clone(b)
	}

	var stderr *os.File
	if cmd.Stderr == nil {
		if stderr, err = os.CreateTemp("", "powerloss-stderr"); err != nil {
			return nil, fmt.Errorf("powerloss: %w", err)
		}
		defer os.Remove(stderr.Name())
		defer stderr.Close()
		cmd.Stderr = stderr
	}
	cmd.Stdout = nil
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Ptrace = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("powerloss: start child: %w", err)
	}
	pid := cmd.Process.Pid
	defer cmd.Process.Release()
	timer := time.AfterFunc(timeout, func() { syscall.Kill(pid, syscall.SIGKILL) })
	defer timer.Stop()

	status, err := tr.loop(pid)
	if err != nil {
		// The loop gave up on a child that may still run: end and reap it.
		syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		for {
			tid, werr := syscall.Wait4(-1, &ws, syscall.WALL, nil)
			if (werr != nil && !errors.Is(werr, syscall.EINTR)) || (tid == pid && (ws.Exited() || ws.Signaled())) {
				break
			}
		}
	}
	if err == nil && tr.err != nil {
		err = tr.err
	}
	tr.inFlight()
	if err == nil && !status.Exited() {
		err = fmt.Errorf("child ended with %v", status)
	}
	if err == nil && status.ExitStatus() != 0 {
		err = fmt.Errorf("child exited with status %d", status.ExitStatus())
	}
	if err == nil && (len(tr.trace.lineIdx) == 0 || tr.trace.events[tr.trace.lineIdx[0]].line != handshake) {
		err = errors.New("child did not call powerloss.Child first")
	}
	if err == nil {
		err = tr.checkFinal()
	}
	if err != nil {
		msg := ""
		if stderr != nil {
			b, _ := os.ReadFile(stderr.Name())
			msg = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("powerloss: %w; child stderr: %q", err, msg)
	}
	return tr.trace, nil
}

type tracer struct {
	root  string
	trace *Trace
	// cur is every file's content with all its writes applied, to check the model
	// against the real files.
	cur map[fileKey][]byte
	mem *os.File
	pid int
	// calls holds, per thread, the call it is in.
	calls map[int]*call
	// uncertain marks the files a write was in flight to when the child exited.
	uncertain map[fileKey]bool
	// partial holds standard output not yet ended by a newline.
	partial []byte
	syncs   int
	err     error
}

// loop runs the child until its main thread exits, handling each stop.
func (tr *tracer) loop(pid int) (syscall.WaitStatus, error) {
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return ws, fmt.Errorf("wait for child start: %w", err)
	}
	if !ws.Stopped() {
		return ws, fmt.Errorf("child did not stop at exec: %v", ws)
	}
	opts := ptraceOTraceSysGood | ptraceOTraceClone | ptraceOTraceSeccomp | ptraceOExitKill
	if err := syscall.PtraceSetOptions(pid, opts); err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		return ws, fmt.Errorf("ptrace options: %w", err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		return ws, fmt.Errorf("open child memory: %w", err)
	}
	defer mem.Close()
	tr.mem, tr.pid = mem, pid
	if err := syscall.PtraceCont(pid, 0); err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		return ws, fmt.Errorf("ptrace cont: %w", err)
	}
	for {
		tid, err := syscall.Wait4(-1, &ws, syscall.WALL, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("wait: %w", err)
		}
		if ws.Exited() || ws.Signaled() {
			if tid == pid {
				return ws, nil
			}
			continue
		}
		if !ws.Stopped() {
			continue
		}
		sig, resume := 0, syscall.PtraceCont
		switch s := ws.StopSignal(); {
		case s == syscall.SIGTRAP && ws.TrapCause() == ptraceEventSeccomp:
			c, err := tr.enter(tid)
			if err != nil && gone(tid) {
				// Killed by the child's exit while stopped: the call never runs.
				c, err = nil, nil
			}
			tr.fail(err)
			if c != nil && tr.err == nil {
				tr.calls[tid] = c
				resume = syscall.PtraceSyscall // stop again when the call returns
			}
		case s == syscall.SIGTRAP|0x80:
			if c := tr.calls[tid]; c != nil {
				done, err := tr.exit(tid, c)
				if err != nil && gone(tid) {
					err = nil // killed by the child's exit: the call stays in flight
				}
				if done {
					delete(tr.calls, tid)
				}
				tr.fail(err)
			}
		case s == syscall.SIGTRAP && ws.TrapCause() == ptraceEventClone:
		case s == syscall.SIGSTOP:
			// A new thread starts stopped; nobody else sends SIGSTOP.
		default:
			sig = int(s) // a signal for the child, such as the runtime's SIGURG
		}
		// ESRCH: the thread died meanwhile, as when the child is killed.
		if err := resume(tid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return ws, fmt.Errorf("ptrace cont: %w", err)
		}
	}
}

// fail records the first error and kills the child: the trace is no good.
func (tr *tracer) fail(err error) {
	if err != nil && tr.err == nil {
		tr.err = err
		syscall.Kill(tr.pid, syscall.SIGKILL)
	}
}

// call is a system call the tracer saw start and records when it returns, so that a
// call cut short by the child's exit is not recorded.
type call struct {
	nr   uint64
	fd   int
	file fileKey
	to   fileKey // rename: the file's new name
	dir  string  // fsync of a directory: its path and path relative to the root
	rel  string
	data []byte
	off  int64
}

// enter handles a seccomp stop: thread tid is about to make one of tracedSyscalls. It
// returns the call to record at its return, or nil if it is not of interest.
func (tr *tracer) enter(tid int) (*call, error) {
	var regs syscall.PtraceRegs
	if err := syscall.PtraceGetRegs(tid, &regs); err != nil {
		return nil, fmt.Errorf("ptrace getregs: %w", err)
	}
	c := &call{nr: regs.Orig_rax, fd: int(int32(regs.Rdi))}
	switch c.nr {
	case sysWrite:
		if c.fd == 1 {
			b, err := tr.read(regs.Rsi, regs.Rdx)
			c.data = b
			return c, err
		}
		key, tracked, err := tr.fdFile(c.fd)
		if err != nil || !tracked {
			return nil, err
		}
		// write(2) writes at the file position, which only this thread moves while it
		// is stopped here (the stores under test write each file from one goroutine).
		if c.off, err = tr.fdPos(c.fd); err != nil {
			return nil, err
		}
		b, err := tr.read(regs.Rsi, regs.Rdx)
		c.file, c.data = key, b
		return c, err
	case sysRename, sysRenameat, sysRenameat2:
		return tr.enterRename(c, &regs)
	case sysFallocate:
		// Only FALLOC_FL_KEEP_SIZE, which reserves blocks and changes neither the data
		// nor the size, is modeled: as nothing.
		if _, tracked, err := tr.fdFile(c.fd); err != nil || tracked && regs.Rsi != fallocKeepSize {
			return nil, cmp(err, fmt.Errorf("fallocate(2) with mode %#x on a file under the root is not modeled", regs.Rsi))
		}
		return nil, nil
	case sysSyncFileRange:
		// sync_file_range(2) starts or waits for writeback but makes nothing durable
		// (no metadata, no disk cache flush), so the model ignores it: the writes it
		// covers stay pending until an fsync or fdatasync.
		return nil, nil
	case sysPwrite64:
		key, tracked, err := tr.fdFile(c.fd)
		if err != nil || !tracked {
			return nil, err
		}
		b, err := tr.read(regs.Rsi, regs.Rdx)
		c.file, c.data, c.off = key, b, int64(regs.R10)
		return c, err
	case sysFtruncate:
		key, tracked, err := tr.fdFile(c.fd)
		if err != nil || !tracked {
			return nil, err
		}
		c.file, c.off = key, int64(regs.Rsi)
		return c, nil
	case sysFsync, sysFdatasync:
		path := fmt.Sprintf("/proc/%d/fd/%d", tr.pid, c.fd)
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("stat fd %d: %w", c.fd, err)
		}
		if fi.IsDir() {
			target, err := os.Readlink(path)
			if err != nil {
				return nil, fmt.Errorf("fd %d: %w", c.fd, err)
			}
			rel, ok := relUnder(tr.root, target)
			if !ok {
				return nil, nil
			}
			c.dir, c.rel = target, rel
			return c, nil
		}
		key, tracked, err := tr.fdFile(c.fd)
		if err != nil || !tracked {
			return nil, err
		}
		c.file = key
		return c, nil
	case sysTruncate, sysSync, sysSyncfs:
		return nil, fmt.Errorf("system call %d is not modeled", c.nr)
	default: // writev, pwritev, pwritev2, copy_file_range
		if _, tracked, err := tr.fdFile(c.fd); err != nil || tracked {
			return nil, cmp(err, fmt.Errorf("system call %d on a file under the root is not modeled", c.nr))
		}
	}
	return nil, nil
}

// gone reports whether thread tid is no longer stopped for the tracer, as when the
// child's exit killed it.
func gone(tid int) bool {
	var regs syscall.PtraceRegs
	return errors.Is(syscall.PtraceGetRegs(tid, &regs), syscall.ESRCH)
}

// exit records call c, which thread tid has just returned from, and reports whether it
// did: not if the return value could not be read.
func (tr *tracer) exit(tid int, c *call) (bool, error) {
	var regs syscall.PtraceRegs
	if err := syscall.PtraceGetRegs(tid, &regs); err != nil {
		return false, fmt.Errorf("ptrace getregs: %w", err)
	}
	ret := int64(regs.Rax)
	if ret < 0 {
		return true, nil // failed: nothing changed
	}
	return true, tr.record(c, ret)
}

// record adds the event of call c, which returned ret.
func (tr *tracer) record(c *call, ret int64) error {
	switch {
	case c.nr == sysWrite && c.fd == 1:
		tr.stdout(c.data[:ret])
		return nil
	}
	switch c.nr {
	case sysPwrite64, sysWrite:
		tr.add(event{kind: evWrite, file: c.file, off: c.off, data: c.data[:ret]})
	case sysRename, sysRenameat, sysRenameat2:
		tr.add(event{kind: evRename, file: c.file, to: c.to})
	case sysFtruncate:
		tr.add(event{kind: evTruncate, file: c.file, off: c.off})
	case sysFsync, sysFdatasync:
		if c.dir != "" {
			ents, err := listDir(c.dir)
			if err != nil {
				return fmt.Errorf("list %s: %w", c.dir, err)
			}
			tr.add(event{kind: evDirSync, dir: c.rel, entries: ents})
			return nil
		}
		tr.add(event{kind: evSync, file: c.file})
		// Check the model against the file now and then; every sync would make the
		// trace quadratic in the file size.
		if tr.syncs++; tr.syncs%16 == 1 {
			real, err := os.ReadFile(fmt.Sprintf("/proc/%d/fd/%d", tr.pid, c.fd))
			if err != nil {
				return fmt.Errorf("read %s to check the model: %w", c.file.path, err)
			}
			if !bytes.Equal(real, tr.cur[c.file]) {
				return fmt.Errorf("model of %s differs from the file at sync %d: a write was not seen", c.file.path, tr.syncs)
			}
		}
	}
	return nil
}

func cmp(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// inFlight records the calls the child was in when it exited. Threads killed by the
// exit report no return, so whether such a write happened, or how much of it, is
// unknown; it is recorded whole, as a write no sync follows, and its file is left out of
// the final check. A sync in flight is not recorded: nothing waited for it. A line in
// flight is recorded: it reports something that had already happened.
func (tr *tracer) inFlight() {
	tids := make([]int, 0, len(tr.calls))
	for tid := range tr.calls {
		tids = append(tids, tid)
	}
	slices.Sort(tids)
	for _, tid := range tids {
		c := tr.calls[tid]
		switch {
		case c.nr == sysWrite && c.fd == 1:
			tr.stdout(c.data)
		case c.nr == sysPwrite64 || c.nr == sysWrite:
			tr.add(event{kind: evWrite, file: c.file, off: c.off, data: c.data})
			tr.uncertain[c.file] = true
		case c.nr == sysRename || c.nr == sysRenameat || c.nr == sysRenameat2:
			// Done or not: either way the directory syncs that follow (none, the child
			// has exited) decide which name survives; the model only needs both names.
			tr.add(event{kind: evRename, file: c.file, to: c.to})
			tr.uncertain[c.to] = true
		case c.nr == sysFtruncate:
			tr.add(event{kind: evTruncate, file: c.file, off: c.off})
			tr.uncertain[c.file] = true
		}
	}
	clear(tr.calls)
}

// add records e and keeps cur up to date.
func (tr *tracer) add(e event) {
	t := tr.trace
	if e.kind == evLine {
		t.lineIdx = append(t.lineIdx, len(t.events))
	}
	if e.kind == evWrite || e.kind == evTruncate {
		tr.cur[e.file] = apply(tr.cur[e.file], &e, len(e.data))
	}
	if e.kind == evRename {
		tr.cur[e.to] = tr.cur[e.file]
		delete(tr.cur, e.file)
	}
	t.events = append(t.events, e)
}

func (tr *tracer) stdout(b []byte) {
	tr.partial = append(tr.partial, b...)
	for {
		i := bytes.IndexByte(tr.partial, '\n')
		if i < 0 {
			return
		}
		tr.add(event{kind: evLine, line: string(tr.partial[:i])})
		tr.partial = tr.partial[i+1:]
	}
}

// read copies n bytes at addr out of the child's memory.
func (tr *tracer) read(addr, n uint64) ([]byte, error) {
	if n > 1<<30 {
		return nil, fmt.Errorf("write of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := tr.mem.ReadAt(b, int64(addr)); err != nil {
		return nil, fmt.Errorf("read child memory: %w", err)
	}
	return b, nil
}

// fdFile resolves the child's file descriptor fd and reports whether it is a regular file
// under the root.
func (tr *tracer) fdFile(fd int) (fileKey, bool, error) {
	path := fmt.Sprintf("/proc/%d/fd/%d", tr.pid, fd)
	target, err := os.Readlink(path)
	if err != nil {
		return fileKey{}, false, fmt.Errorf("fd %d: %w", fd, err)
	}
	rel, ok := relUnder(tr.root, target)
	if !ok {
		return fileKey{}, false, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileKey{}, false, fmt.Errorf("stat fd %d: %w", fd, err)
	}
	if !fi.Mode().IsRegular() {
		return fileKey{}, false, nil
	}
	return fileKey{rel, fi.Sys().(*syscall.Stat_t).Ino}, true, nil
}

// checkFinal compares every file left under the root with the model.
func (tr *tracer) checkFinal() error {
	files, _, err := snapshot(tr.root)
	if err != nil {
		return err
	}
	for k, b := range files {
		if !tr.uncertain[k] && !bytes.Equal(b, tr.cur[k]) {
			return fmt.Errorf("model of %s differs from the file at the end: a write was not seen", k.path)
		}
	}
	return nil
}

func inode(path string) (uint64, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	return fi.Sys().(*syscall.Stat_t).Ino, nil
}

// fdPos returns the file position of the child's fd, refusing a file opened with
// O_APPEND, whose writes go to the end whatever the position says.
func (tr *tracer) fdPos(fd int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", tr.pid, fd))
	if err != nil {
		return 0, fmt.Errorf("fdinfo %d: %w", fd, err)
	}
	var pos int64
	var flags uint64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "pos":
			pos, err = strconv.ParseInt(v, 10, 64)
		case "flags":
			flags, err = strconv.ParseUint(v, 8, 64)
		}
		if err != nil {
			return 0, fmt.Errorf("fdinfo %d: %s: %w", fd, k, err)
		}
	}
	if flags&oAppend != 0 {
		return 0, fmt.Errorf("write(2) to a file under the root opened with O_APPEND is not modeled")
	}
	return pos, nil
}

// enterRename handles rename, renameat and renameat2: a regular file under the root
// renamed within the root is modeled; a rename into or out of the root, of a directory,
// or with renameat2 flags is not.
func (tr *tracer) enterRename(c *call, regs *syscall.PtraceRegs) (*call, error) {
	oldDir, oldAddr, newDir, newAddr := int64(atFDCWD), regs.Rdi, int64(atFDCWD), regs.Rsi
	if c.nr != sysRename {
		oldDir, oldAddr, newDir, newAddr = int64(int32(regs.Rdi)), regs.Rsi, int64(int32(regs.Rdx)), regs.R10
	}
	if c.nr == sysRenameat2 && regs.R8 != 0 {
		return nil, fmt.Errorf("renameat2(2) with flags %#x is not modeled", regs.R8)
	}
	oldPath, err := tr.path(oldDir, oldAddr)
	if err != nil {
		return nil, err
	}
	newPath, err := tr.path(newDir, newAddr)
	if err != nil {
		return nil, err
	}
	oldRel, oldIn := relUnder(tr.root, oldPath)
	newRel, newIn := relUnder(tr.root, newPath)
	switch {
	case !oldIn && !newIn:
		return nil, nil
	case oldIn != newIn:
		return nil, fmt.Errorf("rename of %s to %s across the root is not modeled", oldPath, newPath)
	}
	fi, err := os.Lstat(oldPath)
	if err != nil {
		return nil, nil // the call fails: nothing changes
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("rename of %s, not a regular file, is not modeled", oldPath)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	c.file, c.to = fileKey{oldRel, ino}, fileKey{newRel, ino}
	return c, nil
}

// path reads a NUL-terminated path at addr in the child's memory and makes it absolute
// against the directory fd dirfd (AT_FDCWD: the child's working directory).
func (tr *tracer) path(dirfd int64, addr uint64) (string, error) {
	var b []byte
	for len(b) < 4096 {
		// Read up to the end of the page, which is mapped if addr is.
		chunk := make([]byte, 4096-(addr+uint64(len(b)))%4096)
		n, err := tr.mem.ReadAt(chunk, int64(addr)+int64(len(b)))
		if n == 0 && err != nil {
			return "", fmt.Errorf("read path from child memory: %w", err)
		}
		if i := bytes.IndexByte(chunk[:n], 0); i >= 0 {
			b = append(b, chunk[:i]...)
			p := string(b)
			if filepath.IsAbs(p) {
				return filepath.Clean(p), nil
			}
			base := fmt.Sprintf("/proc/%d/cwd", tr.pid)
			if dirfd != atFDCWD {
				base = fmt.Sprintf("/proc/%d/fd/%d", tr.pid, dirfd)
			}
			dir, err := os.Readlink(base)
			if err != nil {
				return "", fmt.Errorf("resolve %q: %w", p, err)
			}
			return filepath.Join(dir, p), nil
		}
		b = append(b, chunk[:n]...)
	}
	return "", errors.New("path in child memory longer than 4096 bytes")
}
