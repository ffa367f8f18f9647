package procmem

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// readOnlyRSSKiB is the resident part of the binary's read-only mappings.
func readOnlyRSSKiB(t *testing.T) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	total, counting := 0, false
	for _, l := range strings.Split(string(b), "\n") {
		fields := strings.Fields(l)
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			counting = len(fields) >= 6 && fields[5] == exe && !strings.ContainsRune(fields[1], 'w')
		case counting && len(fields) == 3 && fields[0] == "Rss:":
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			total += n
		}
	}
	return total
}

// The test binary's initialisation mapped more of it than the test then runs:
// dropping the startup pages unmaps that (what runs after, reading smaps
// again, is mapped back), and the process goes on.
func TestDropStartupPagesUnmapsTheBinarysReadOnlyPages(t *testing.T) {
	before := readOnlyRSSKiB(t)
	n, err := DropStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := readOnlyRSSKiB(t)
	if n == 0 {
		t.Fatal("DropStartupPages found no read-only mapping of the binary")
	}
	if after >= before {
		t.Errorf("read-only mappings of the binary: %d KiB resident before, %d KiB after dropping %d KiB of mappings: want less", before, after, n/1024)
	}
	// Still runs: the code the test uses is mapped back on first use.
	if got := strconv.Itoa(42); got != "42" {
		t.Fatal(got)
	}
}
