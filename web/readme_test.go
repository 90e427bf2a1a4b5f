package web_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestErrorCodesDocumented: every error code the API can answer is in the README's
// error table, and the table lists no code the API does not use.
func TestErrorCodesDocumented(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("web.go")
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, m := range regexp.MustCompile(`code: "([a-z_]+)"|writeError\(w, http\.Status[A-Za-z]+, "([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		used = append(used, m[1]+m[2])
	}
	slices.Sort(used)
	used = slices.Compact(used)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Check page and API")
	section, _, _ = strings.Cut(section, "\n## ")
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		if m := regexp.MustCompile(`^\| [0-9]{3} \| (.+?) \|`).FindStringSubmatch(line); m != nil {
			for _, c := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[1], -1) {
				documented = append(documented, c[1])
			}
		}
	}
	slices.Sort(documented)
	if !slices.Equal(used, documented) {
		t.Errorf("README error table %q; the API uses %q", documented, used)
	}
}
