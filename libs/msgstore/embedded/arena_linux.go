package embedded

import "syscall"

// mapMemory maps n bytes of anonymous private memory for the index arena: outside the
// Go heap, so the garbage collector neither scans it nor counts it toward its pace,
// and resident only once touched.
func mapMemory(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// unmapMemory gives memory from mapMemory back to the system.
func unmapMemory(b []byte) error {
	return syscall.Munmap(b)
}

// discardMemory gives the pages of b, from mapMemory, back to the system; they read
// as zeros when touched again.
func discardMemory(b []byte) error {
	return syscall.Madvise(b, syscall.MADV_DONTNEED)
}
