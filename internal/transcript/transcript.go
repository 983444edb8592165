package transcript

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Block is one chunk of a recording.
type Block struct {
	Dir   string  // "C->S", "S->C", "NOTE" or "CLOSE"
	Conn  string  // connection label, "" when the file traces one connection
	Time  float64 // seconds since the start of the capture
	Data  []byte  // raw bytes (for NOTE and CLOSE: the rest of the marker line)
	Index int     // position in the file, from 0
}

// FromClient reports whether the block was sent by the client.
func (b Block) FromClient() bool { return b.Dir == "C->S" }

// FromServer reports whether the block was sent by Asterisk.
func (b Block) FromServer() bool { return b.Dir == "S->C" }

// File is one parsed recording.
type File struct {
	Name     string
	Comments []string
	Blocks   []Block
}

// Load reads and parses the recording at path.
func Load(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	f, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("transcript: %s: %w", path, err)
	}
	f.Name = path
	return f, nil
}

// Parse parses a recording held in memory.
func Parse(raw []byte) (*File, error) {
	f := &File{}
	for len(raw) > 0 {
		nl := bytes.IndexByte(raw, '\n')
		if nl < 0 {
			nl = len(raw)
		}
		line := string(raw[:nl])
		rest := raw[min(nl+1, len(raw)):]
		switch {
		case strings.HasPrefix(line, "#### NOTE"), strings.HasPrefix(line, "#### CLOSE"):
			fields := strings.Fields(line)
			b := Block{Dir: fields[1], Data: []byte(strings.TrimSpace(strings.TrimPrefix(line, "#### "+fields[1]))), Index: len(f.Blocks)}
			if len(fields) > 2 && strings.HasPrefix(fields[2], "+") {
				b.Time, _ = strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(fields[2], "+"), "s"), 64)
			}
			f.Blocks = append(f.Blocks, b)
			raw = rest
		case strings.HasPrefix(line, "#### "):
			// "#### C->S[label] +0.003s 72 bytes"
			fields := strings.Fields(line)
			if len(fields) != 5 || fields[4] != "bytes" {
				return nil, fmt.Errorf("bad marker %q", line)
			}
			dir, conn, _ := strings.Cut(fields[1], "[")
			conn = strings.TrimSuffix(conn, "]")
			t, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(fields[2], "+"), "s"), 64)
			if err != nil {
				return nil, fmt.Errorf("bad time in %q", line)
			}
			n, err := strconv.Atoi(fields[3])
			if err != nil || n < 0 || n > len(rest) {
				return nil, fmt.Errorf("bad length in %q", line)
			}
			f.Blocks = append(f.Blocks, Block{Dir: dir, Conn: conn, Time: t, Data: rest[:n:n], Index: len(f.Blocks)})
			raw = rest[n:]
			if len(raw) > 0 && raw[0] == '\n' {
				raw = raw[1:]
			}
		case strings.HasPrefix(line, "#"):
			f.Comments = append(f.Comments, line)
			raw = rest
		case line == "":
			raw = rest
		default:
			return nil, fmt.Errorf("unexpected line %q", line)
		}
	}
	return f, nil
}

// Stream returns the concatenated bytes sent in one direction ("C->S" or
// "S->C") on one connection ("" for every connection).
func (f *File) Stream(dir, conn string) []byte {
	var out []byte
	for _, b := range f.Blocks {
		if b.Dir == dir && (conn == "" || b.Conn == conn) {
			out = append(out, b.Data...)
		}
	}
	return out
}

// Conns returns the connection labels in order of first appearance.
func (f *File) Conns() []string {
	var out []string
	seen := map[string]bool{}
	for _, b := range f.Blocks {
		if (b.FromClient() || b.FromServer()) && !seen[b.Conn] {
			seen[b.Conn] = true
			out = append(out, b.Conn)
		}
	}
	return out
}
