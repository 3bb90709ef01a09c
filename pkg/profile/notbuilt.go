//go:build jobfleet_noaws || jobfleet_nolocal

package profile

import "fmt"

// NotBuilt is the error of a profile or fleet this binary was built without.
func NotBuilt(what, tag string) error {
	return fmt.Errorf("%s is not in this binary: it was built with -tags %s (build without it to have both profiles)", what, tag)
}
