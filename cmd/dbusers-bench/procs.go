package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of the CPU times in /proc (USER_HZ, 100 on every
// Linux build the benchmark runs on).
const clockTick = 10 * time.Millisecond

// procCPU returns the user+system CPU time that process pid has used so far,
// from /proc/<pid>/stat. pid 0 means this process.
func procCPU(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	_, cpu, err := parseStat(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return cpu, nil
}

// parseStat returns the command name and the user+system CPU time of a
// /proc/<pid>/stat line.
func parseStat(data []byte) (string, time.Duration, error) {
	// The command name is in parentheses and may hold spaces: the fields
	// that count come after the last ')'. utime and stime are fields 14
	// and 15 of the line, so 12 and 13 after the state field.
	open := bytes.IndexByte(data, '(')
	i := bytes.LastIndexByte(data, ')')
	if open < 0 || i < open {
		return "", 0, errors.New("no command name")
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return "", 0, fmt.Errorf("%d fields", len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return "", 0, err
	}
	return string(data[open+1 : i]), time.Duration(utime+stime) * clockTick, nil
}

// procSample is one process's name and CPU time so far.
type procSample struct {
	comm string
	cpu  time.Duration
}

// allProcs reads the CPU time of every process on the machine.
func allProcs() map[int]procSample {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := make(map[int]procSample, len(dirs))
	for _, path := range dirs {
		pid, err := strconv.Atoi(strings.Split(path, "/")[2])
		if err != nil {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if comm, cpu, err := parseStat(data); err == nil {
			out[pid] = procSample{comm: comm, cpu: cpu}
		}
	}
	return out
}

// machineBusy returns the CPU time all cores spent busy so far, from the
// "cpu" line of /proc/stat (user, nice, system, irq, softirq, steal).
func machineBusy() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 9 || fields[0] != "cpu" {
			continue
		}
		var busy int64
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			v, err := strconv.ParseInt(fields[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat: %w", err)
			}
			busy += v
		}
		return time.Duration(busy) * clockTick, nil
	}
	return 0, errors.New("/proc/stat: no cpu line")
}

// peakRSS returns the peak resident set size (VmHWM) of a live process.
func peakRSS(pid int) (int64, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: VmHWM: %w", path, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("%s: no VmHWM", path)
}

// listenerPID returns the process listening on the TCP port of addr
// (host:port), found through the socket inode in /proc/net/tcp{,6} and the
// processes' file descriptors. It needs permission to read other processes'
// fds (root, or the same user).
func listenerPID(addr string) (int, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("MySQL address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return 0, fmt.Errorf("port of %s: %w", addr, err)
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			f := strings.Fields(line)
			// sl local_address rem_address st ... uid timeout inode
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	procs, err := filepath.Glob("/proc/[0-9]*/fd/*")
	if err != nil {
		return 0, fmt.Errorf("list fds: %w", err)
	}
	for _, fd := range procs {
		link, err := os.Readlink(fd)
		if err != nil || !inodes[link] {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err == nil {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no readable process holds the listener on port %d", port)
}

// child is a process the benchmark started: the nats-server or a worker.
type child struct {
	name   string
	cmd    *exec.Cmd
	lines  chan string // its stdout, line by line
	exited chan struct{}
	log    *os.File
}

// startChild starts args as a child process whose stderr goes to logPath
// and whose stdout lines arrive on child.lines. The child gets SIGTERM if
// the benchmark dies.
func startChild(name, logPath string, args []string, env []string) (*child, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, args[0], err)
	}
	c := &child{name: name, cmd: cmd, lines: make(chan string, 16), exited: make(chan struct{}), log: logFile}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			default: // nobody is listening for status lines now
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// waitLine waits for a stdout line that starts with prefix and returns the
// rest of it.
func (c *child) waitLine(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		select {
		case line := <-c.lines:
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return strings.TrimSpace(rest), nil
			}
		case <-c.exited:
			return "", fmt.Errorf("%s exited (see %s)", c.name, c.log.Name())
		case <-ctx.Done():
			return "", fmt.Errorf("%s: waiting for %q: %w (see %s)", c.name, prefix, ctx.Err(), c.log.Name())
		}
	}
}

// signal sends sig to the child.
func (c *child) signal(sig os.Signal) error {
	if err := c.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: signal %v: %w", c.name, sig, err)
	}
	return nil
}

// stop sends SIGTERM, waits up to grace, then kills. It is safe to call
// more than once.
func (c *child) stop(grace time.Duration) {
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(grace):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	_ = c.log.Close()
}
