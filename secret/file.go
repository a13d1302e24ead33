package secret

import (
	"fmt"
	"os"
)

// CheckFile refuses a file that holds a secret but is missing, is not a
// regular file, or is open to group or others: whoever reads it holds the
// secret, and whoever can write it can swap it. Its errors name the path and
// the chmod that fixes it, never the content.
func CheckFile(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%s has mode %04o, open to group or others; run: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	return nil
}
