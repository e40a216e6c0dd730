package main

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayout keeps DESIGN.md's one-way dependencies true: cmd -> server -> {fanout, loop}
// -> {codec, timerwheel}; bench -> {codec, timerwheel}; codec and timerwheel import nothing
// of the project; loop and fanout never import each other; only server (and cmd) may
// import the metrics library.
func TestLayout(t *testing.T) {
	const mod = "github.com/wsreactor/wsreactor/"
	allowed := map[string][]string{
		"codec":      {},
		"timerwheel": {},
		"loop":       {"codec", "timerwheel"},
		"fanout":     {"codec"},
		"server":     {"codec", "timerwheel", "loop", "fanout"},
		"bench":      {"codec", "timerwheel"},
	}
	root := filepath.Join("..", "..")
	for pkg, ok := range allowed {
		dir := filepath.Join(root, pkg)
		if _, err := os.Stat(dir); err != nil {
			continue // a package of the layout that does not exist yet
		}
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				p := strings.Trim(imp.Path.Value, `"`)
				if strings.HasPrefix(p, "github.com/VictoriaMetrics/metrics") && pkg != "server" {
					t.Errorf("%s imports the metrics library; only server may", path)
				}
				if !strings.HasPrefix(p, mod) {
					continue
				}
				target := strings.SplitN(strings.TrimPrefix(p, mod), "/", 2)[0]
				if target == pkg {
					continue
				}
				allowedHere := false
				for _, a := range ok {
					allowedHere = allowedHere || a == target
				}
				if !allowedHere {
					t.Errorf("%s imports %s: %s may import only %v", path, p, pkg, ok)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
