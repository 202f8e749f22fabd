//go:build !linux

package fsx

// exchange swaps a and b with two renames (not atomic: a crash between
// them leaves b's old tree at a temporary name).
func exchange(a, b string) error {
	return exchangeRenames(a, b)
}
