package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoFixedWaits keeps fixed waits out of the repository's tests: a
// time.Sleep in a _test.go file runs on a synctest bubble's clock (inside
// the function given to synctest.Test, or in a helper whose comment says
// it runs in the bubble), or is pacing (a comment saying "pacing" on its
// line or just above it: load spread over time on purpose). Anything else
// waits for an event, or polls with Eventually.
func TestNoFixedWaits(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	var bad []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", ".bin", "gen", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		bad = append(bad, fixedWaits(fset, f)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("%s: time.Sleep outside a synctest bubble and not marked as pacing: wait for the event, or use testenv.Eventually", b)
	}
}

// fixedWaits returns the positions of the file's time.Sleep calls that are
// neither in a bubble nor pacing.
func fixedWaits(fset *token.FileSet, f *ast.File) []string {
	var bubbles [][2]token.Pos
	ast.Inspect(f, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && isCall(call, "synctest", "Test") {
			for _, a := range call.Args {
				if fl, ok := a.(*ast.FuncLit); ok {
					bubbles = append(bubbles, [2]token.Pos{fl.Pos(), fl.End()})
				}
			}
		}
		return true
	})
	// Lines whose comment, or the comment just above, names the reason.
	marked := map[int]bool{}
	for _, cg := range f.Comments {
		text := strings.ToLower(cg.Text())
		if strings.Contains(text, "pacing") || strings.Contains(text, "bubble") {
			end := fset.Position(cg.End()).Line
			for l := fset.Position(cg.Pos()).Line; l <= end+1; l++ {
				marked[l] = true
			}
		}
	}
	// Functions documented as running in a bubble.
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Doc != nil && strings.Contains(strings.ToLower(fd.Doc.Text()), "bubble") {
			bubbles = append(bubbles, [2]token.Pos{fd.Pos(), fd.End()})
		}
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || !isCall(call, "time", "Sleep") {
			return true
		}
		for _, b := range bubbles {
			if call.Pos() >= b[0] && call.End() <= b[1] {
				return true
			}
		}
		if p := fset.Position(call.Pos()); !marked[p.Line] {
			out = append(out, p.String())
		}
		return true
	})
	return out
}

func isCall(call *ast.CallExpr, pkg, name string) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

func TestFixedWaitsFinds(t *testing.T) {
	const src = `package p

func TestA(t *testing.T) {
	time.Sleep(time.Second) // line 4: a fixed wait
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Hour) // the bubble's clock
	})
	// pacing: spread the load
	time.Sleep(time.Millisecond)
	time.Sleep(time.Millisecond) // pacing too
}

// inBubble runs in a test's bubble.
func inBubble() { time.Sleep(time.Minute) }

func other() { time.Sleep(time.Minute) } // line 16
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p_test.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	got := fixedWaits(fset, f)
	want := []string{"p_test.go:4:2", "p_test.go:16:16"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("fixedWaits = %v, want %v", got, want)
	}
}
