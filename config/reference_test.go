package config

import (
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's configuration reference from the schema")

const (
	readme         = "../README.md"
	referenceTable = "| key | default | meaning |\n|---|---|---|\n"
)

// referenceRows writes the rows of the README's configuration reference for the
// keys of the schema: the key, its default as YAML would write it, its help.
func referenceRows() string {
	var b strings.Builder
	for _, k := range keys {
		vals := k.format(k.def)
		def := "[" + strings.Join(vals, ", ") + "]"
		if !k.isList() {
			def = vals[0]
		}
		switch _, mode := k.def.(os.FileMode); {
		case def == "":
			def = `""`
		case mode:
			def = strconv.Quote(def) // YAML reads an unquoted 0660 as a decimal number
		}
		b.WriteString("| `" + k.name + "` | `" + def + "` | " + k.help + " |\n")
	}
	return b.String()
}

// TestReadmeReference: the README's configuration reference lists every key of the
// schema, in its order, with its default and its documentation, and nothing else
// before the policies and customers lists. go test ./config -run TestReadmeReference
// -update rewrites it.
func TestReadmeReference(t *testing.T) {
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, referenceTable)
	if start < 0 {
		t.Fatalf("README has no table %q", referenceTable)
	}
	start += len(referenceTable)
	end := strings.Index(text[start:], "| `policies[]` |")
	if end < 0 {
		t.Fatal("README's configuration reference has no policies[] row")
	}
	end += start
	want := referenceRows()
	if got := text[start:end]; got != want {
		if *update {
			if err := os.WriteFile(readme, []byte(text[:start]+want+text[end:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		gotRows, wantRows := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range max(len(gotRows), len(wantRows)) {
			g, w := "", ""
			if i < len(gotRows) {
				g = gotRows[i]
			}
			if i < len(wantRows) {
				w = wantRows[i]
			}
			if g != w {
				t.Errorf("README row %d:\n%s\nschema:\n%s", i+1, g, w)
			}
		}
		t.Error("the README's configuration reference differs from the schema (config/schema.go); go test ./config -run TestReadmeReference -update rewrites it")
	}
}
