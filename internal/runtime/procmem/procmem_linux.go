package procmem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// DropStartupPages unmaps the read-only mappings of the process's binary
// (madvise MADV_DONTNEED, which for an unmodified private file mapping only
// drops the page-table entries) and returns how many bytes of address space
// it covered. The writable mappings (data, bss, heap) are left alone.
func DropStartupPages() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	total := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.ContainsRune(fields[1], 'w') {
			continue
		}
		from, to, _ := strings.Cut(fields[0], "-")
		lo, err1 := strconv.ParseUint(from, 16, 64)
		hi, err2 := strconv.ParseUint(to, 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			return total, fmt.Errorf("/proc/self/maps: unexpected line %q", sc.Text())
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), syscall.MADV_DONTNEED); e != 0 {
			return total, fmt.Errorf("madvise %s %s: %w", fields[0], fields[1], e)
		}
		total += int(hi - lo)
	}
	return total, sc.Err()
}
