// Package procmem trims the process's memory once it has started.
//
// At a light load most of a Go process's resident memory is pages of its
// binary: each package's initialisation touches its code, tables and data,
// and the kernel maps the pages around every page touched (fault-around), so
// the code of every linked package stays mapped for the life of the process
// though most of it never runs again. DropStartupPages unmaps the binary's
// read-only pages (code, read-only data, the function tables) once a role is
// set up; what the role then runs is mapped back on first use, from the page
// cache, without a read from disk. The pages stay in the page cache, shared
// with every other process of the same binary on the node, and become
// reclaimable under memory pressure instead of staying pinned as mapped code
// (docs/architecture.md, The runtime binaries).
package procmem
