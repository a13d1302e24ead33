package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// procSet names the processes whose CPU time the benchmark reads.
type procSet struct {
	nats    int   // the nats-server process
	workers []int // the worker processes running now
	mariadb int   // 0 when it could not be found
}

// cpuSnap is the CPU time each process has used up to a moment.
type cpuSnap struct {
	at                                    time.Time
	bench, nats, worker, mariadb, machine time.Duration
	all                                   map[int]procSample // every process, to name what disturbed a run
	ours                                  map[int]bool
	sql                                   map[string]int64 // MariaDB's global statement counters; nil when not read
	deliveries                            uint64           // deliveries of the jobs consumers so far
	deliveriesOK                          bool
}

// snap reads the CPU times now. A process that is gone counts as 0. The
// scan of every process (to name disturbances) is done where its own cost
// falls outside the interval: before the counters when the run begins,
// after them when it ends.
func (p *procSet) snap() cpuSnap { return p.read(true) }

// end is snap for the end of a run.
func (p *procSet) end() cpuSnap { return p.read(false) }

func (p *procSet) read(begin bool) cpuSnap {
	var all map[int]procSample
	if begin {
		all = allProcs()
	}
	s := cpuSnap{at: time.Now()}
	s.bench, _ = procCPU(0)
	if p.nats != 0 {
		s.nats, _ = procCPU(p.nats)
	}
	for _, w := range p.workers {
		c, _ := procCPU(w)
		s.worker += c
	}
	if p.mariadb != 0 {
		s.mariadb, _ = procCPU(p.mariadb)
	}
	s.machine, _ = machineBusy()
	if !begin {
		all = allProcs()
	}
	s.all = all
	s.ours = map[int]bool{os.Getpid(): true, p.nats: true, p.mariadb: true}
	for _, w := range p.workers {
		s.ours[w] = true
	}
	return s
}

// add returns c + d, field by field.
func (c CPU) add(d CPU) CPU {
	return CPU{Bench: c.Bench + d.Bench, NATS: c.NATS + d.NATS, Worker: c.Worker + d.Worker,
		MariaDB: c.MariaDB + d.MariaDB, Other: c.Other + d.Other}
}

// div returns c with every field divided by n.
func (c CPU) div(n float64) CPU {
	return CPU{Bench: c.Bench / n, NATS: c.NATS / n, Worker: c.Worker / n, MariaDB: c.MariaDB / n, Other: c.Other / n}
}

// others names the processes outside the benchmark that used the most CPU
// between a and b, e.g. "test.test 1.20s, go 0.30s"; "" when none used
// more than 50 ms.
func others(a, b cpuSnap) string {
	byName := map[string]time.Duration{}
	for pid, after := range b.all {
		if a.ours[pid] || b.ours[pid] {
			continue
		}
		d := after.cpu - a.all[pid].cpu // a process started meanwhile counts whole
		if d > 0 {
			byName[after.comm] += d
		}
	}
	type entry struct {
		name string
		d    time.Duration
	}
	var top []entry
	for n, d := range byName {
		if d >= 50*time.Millisecond {
			top = append(top, entry{n, d})
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].d > top[j].d })
	var parts []string
	for _, e := range top[:min(len(top), 3)] {
		parts = append(parts, fmt.Sprintf("%s %.2fs", e.name, e.d.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// quietFor measures, over window, how many cores the processes outside the
// benchmark use, and names the busiest.
func (p *procSet) quietFor(window time.Duration) (float64, string) {
	a := p.snap()
	time.Sleep(window)
	b := p.end()
	us := func(d time.Duration) float64 { return float64(d) }
	ours := us(b.bench-a.bench) + us(b.nats-a.nats) + us(b.worker-a.worker) + us(b.mariadb-a.mariadb)
	busy := us(b.machine-a.machine) - ours
	return max(0, busy/us(b.at.Sub(a.at))), others(a, b)
}

// CPU is the CPU time each process spent during a run, per job, in
// microseconds. Other is what the rest of the machine spent meanwhile
// (other processes, and kernel work not charged to a process): a large
// value means the run was disturbed.
type CPU struct {
	Bench   float64 `json:"bench"`
	NATS    float64 `json:"nats"`
	Worker  float64 `json:"worker"`
	MariaDB float64 `json:"mariadb"`
	Other   float64 `json:"other"`
}

// Total is the CPU of the processes that did the run, without Other.
func (c CPU) Total() float64 { return c.Bench + c.NATS + c.Worker + c.MariaDB }

// perJob returns the CPU spent between a and b, divided by jobs.
func perJob(a, b cpuSnap, jobs int) CPU {
	us := func(d time.Duration) float64 {
		if jobs == 0 {
			return 0
		}
		return float64(d.Microseconds()) / float64(jobs)
	}
	c := CPU{
		Bench:   us(b.bench - a.bench),
		NATS:    us(b.nats - a.nats),
		Worker:  us(b.worker - a.worker),
		MariaDB: us(b.mariadb - a.mariadb),
	}
	c.Other = max(0, us(b.machine-a.machine)-c.Total())
	return c
}

// percentile returns the p-th percentile (0..100) of ds by the nearest-rank
// method; ds is sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	rank := int(p/100*float64(len(ds))+0.5) - 1
	return ds[min(max(rank, 0), len(ds)-1)]
}

// median returns the median of ds (sorted in place).
func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

// Machine describes where the benchmark ran.
type Machine struct {
	Cores     int    `json:"cores"`
	CPUModel  string `json:"cpu_model"`
	MemoryMiB int64  `json:"memory_mib"`
	Kernel    string `json:"kernel"`
	MariaDB   string `json:"mariadb"`
	Go        string `json:"go"`
	LoadAvg   string `json:"loadavg_at_start"`
}

// describeMachine reads the machine's description from /proc.
func describeMachine(mariadb string) Machine {
	m := Machine{Cores: runtime.NumCPU(), MariaDB: mariadb, Go: runtime.Version(), CPUModel: "unknown"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				for _, c := range strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")) {
					kb = kb*10 + int64(c-'0')
				}
				m.MemoryMiB = kb / 1024
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(data))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}
