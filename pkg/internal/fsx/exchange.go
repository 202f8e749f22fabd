package fsx

import (
	"fmt"
	"os"
)

// exchangeRenames swaps a and b through a third name. A crash between the
// renames leaves b's old content at b+".lifeboat-old" and nothing at b.
func exchangeRenames(a, b string) error {
	old := b + ".lifeboat-old"
	if err := os.Rename(b, old); err != nil {
		return err
	}
	if err := os.Rename(a, b); err != nil {
		if rerr := os.Rename(old, b); rerr != nil {
			return fmt.Errorf("%w; and putting %s back failed: %v (it is at %s)", err, b, rerr, old)
		}
		return err
	}
	return os.Rename(old, a)
}
