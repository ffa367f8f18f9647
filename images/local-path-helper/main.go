package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// The local-path-provisioner runs its setup and teardown commands with
// "-p PATH -s SIZE -m MODE -a create|delete". Its stock helper is a shell
// script in busybox; this static program does the same two things in an image
// with no shell, built offline like every other image of the local cluster.
func main() {
	path := flag.String("p", "", "the volume's directory")
	_ = flag.String("s", "", "the volume's size in bytes (unused: local volumes are not limited)")
	mode := flag.String("m", "Filesystem", "the volume mode: Filesystem or Block")
	action := flag.String("a", "", "create or delete")
	flag.Parse()
	if err := run(*path, *mode, *action); err != nil {
		fmt.Fprintf(os.Stderr, "local-path-helper: %v\n", err)
		os.Exit(1)
	}
}

func run(path, mode, action string) error {
	clean := filepath.Clean(path)
	if !filepath.IsAbs(clean) || clean == "/" || filepath.Dir(clean) == "/" {
		return fmt.Errorf("-p %q: want an absolute directory below a volume root", path)
	}
	if mode != "Filesystem" {
		return fmt.Errorf("-m %q: only Filesystem volumes are supported", mode)
	}
	switch action {
	case "create":
		if err := os.MkdirAll(clean, 0o777); err != nil {
			return err
		}
		// MkdirAll's mode is masked by the umask; pods of any user write here.
		return os.Chmod(clean, 0o777)
	case "delete":
		return os.RemoveAll(clean)
	default:
		return fmt.Errorf("-a %q: want create or delete", action)
	}
}
