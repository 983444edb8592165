package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RSS returns the resident set size of process pid in bytes, read from
// /proc/<pid>/smaps_rollup (Rss) or, where that is missing,
// /proc/<pid>/status (VmRSS).
func RSS(pid int) (int64, error) {
	for _, f := range []struct{ file, key string }{{"smaps_rollup", "Rss:"}, {"status", "VmRSS:"}} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f.file))
		if errors.Is(err, os.ErrNotExist) && f.file == "smaps_rollup" {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("loadgen: rss of %d: %w", pid, err)
		}
		kib, err := ParseKiBField(raw, f.key)
		if err != nil {
			return 0, fmt.Errorf("loadgen: rss of %d: %s: %w", pid, f.file, err)
		}
		return kib << 10, nil
	}
	return 0, fmt.Errorf("loadgen: rss of %d: no smaps_rollup or status", pid)
}

// ParseKiBField finds the line "<key> <n> kB" in a /proc file and returns
// n. key includes its colon, e.g. "VmRSS:".
func ParseKiBField(raw []byte, key string) (int64, error) {
	for line := range bytes.Lines(raw) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed %s line %q", key, bytes.TrimSpace(line))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("malformed %s value %q", key, f[0])
		}
		return n, nil
	}
	return 0, fmt.Errorf("no %s line", key)
}

// RaiseNoFile lifts this process's RLIMIT_NOFILE soft limit to its hard
// limit (children inherit it) and returns the new soft limit.
func RaiseNoFile() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("loadgen: getrlimit: %w", err)
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, fmt.Errorf("loadgen: setrlimit nofile %d: %w", r.Max, err)
		}
	}
	return r.Cur, nil
}

// Machine describes the host in one line: CPU model, logical CPUs,
// kernel release and Go version.
func Machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		model = cpuModel(f)
		f.Close()
	}
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d logical CPUs, %s, %s %s/%s", model, runtime.NumCPU(), kernel,
		runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func cpuModel(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// clockTick is the unit of the times in /proc/<pid>/stat (USER_HZ), 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// maxTicks bounds one CPU field so that the sum cannot overflow.
const maxTicks = math.MaxInt64 / int64(clockTick) / 2

// CPUTime returns the user plus system CPU time process pid has used,
// from /proc/<pid>/stat (10 ms resolution).
func CPUTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("loadgen: cpu time of %d: %w", pid, err)
	}
	d, err := ParseStatCPU(raw)
	if err != nil {
		return 0, fmt.Errorf("loadgen: cpu time of %d: %w", pid, err)
	}
	return d, nil
}

// ParseStatCPU returns utime+stime of a /proc/<pid>/stat line. The command
// name in parentheses may contain spaces and parentheses, so fields are
// counted from the last ')'.
func ParseStatCPU(raw []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, errors.New("malformed stat: no command name")
	}
	f := strings.Fields(string(raw[i+1:]))
	// After the name: state(3) ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime(14) stime(15).
	if len(f) < 13 {
		return 0, errors.New("malformed stat: too few fields")
	}
	var total int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > maxTicks {
			return 0, fmt.Errorf("malformed stat: cpu field %q", s)
		}
		total += n
	}
	return time.Duration(total) * clockTick, nil
}
