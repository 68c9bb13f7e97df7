package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// telegrafModule is the peer built for the peers row: Telegraf with only its
// docker_log input and file output, an Engine API reader like berth. It is
// built outside berth's module, into a cache directory, and never in CI.
const telegrafModule = "github.com/influxdata/telegraf/cmd/telegraf@v1.37.2"

// peerCache is where peers are built: $XDG_CACHE_HOME/berth-bench or
// ~/.cache/berth-bench.
func peerCache() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "berth-bench"), nil
}

// buildTelegraf builds Telegraf into the cache (once: a binary there is
// reused) and returns its path.
func buildTelegraf(say func(string)) (string, error) {
	cache, err := peerCache()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "bin", "telegraf")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	say("building Telegraf (docker_log, file) into " + cache + ": a few minutes")
	cmd := exec.Command("go", "install", "-tags", "custom,inputs.docker_log,outputs.file", telegrafModule)
	cmd.Dir = cache // outside berth's module
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(cache, "bin"), "GOFLAGS=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if len(tail) > 1500 {
			tail = tail[len(tail)-1500:]
		}
		return "", fmt.Errorf("go install %s: %w\n%s", telegrafModule, err, tail)
	}
	return bin, nil
}

// telegrafFollow measures Telegraf's docker_log input following a new
// container writing per lines at full speed, its metrics written to a file
// (influx line protocol, one line per log line), like the follow rows.
func (m *measurer) telegrafFollow(bin string, per int) (row, error) {
	r := row{Name: "telegraf follow", Reader: "telegraf", Mode: "follow", Containers: 1, Lines: int64(per)}
	m.say("measuring " + r.Name)
	c, err := m.e.create("telegraf-follow-0", genArgs(per)...)
	if err != nil {
		return r, err
	}
	dir, err := os.MkdirTemp(m.e.tmp, "telegraf-")
	if err != nil {
		return r, err
	}
	outPath := filepath.Join(dir, "out.influx")
	conf := fmt.Sprintf(`[agent]
  interval = "1s"
  flush_interval = "1s"
  metric_batch_size = 5000
  metric_buffer_limit = 2000000
  omit_hostname = true
[[inputs.docker_log]]
  endpoint = %s
  from_beginning = true
  container_name_include = [%s]
[[outputs.file]]
  files = [%s]
  data_format = "influx"
`, quote(m.e.docker.DaemonHost()), quote(m.e.name("telegraf-follow-")+"*"), quote(outPath))
	confPath := filepath.Join(dir, "telegraf.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return r, err
	}
	logf, err := os.Create(filepath.Join(dir, "telegraf.log"))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("starting Telegraf: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // owned: read below, whatever happens
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	defer stop()
	time.Sleep(3 * time.Second) // Telegraf's first gather; it has no readiness endpoint
	bcpu, err := startCPU(cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	dcpu, err := startCPU(m.dockerd)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := m.e.start(c); err != nil {
		return r, err
	}
	var counted int64
	var off int64
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(2*time.Minute + time.Duration(per/2000)*time.Second)
	for counted < int64(per) {
		if f, err := os.Open(outPath); err == nil {
			_, _ = f.Seek(off, io.SeekStart)
			for {
				n, err := f.Read(buf)
				counted += int64(bytes.Count(buf[:n], []byte{'\n'}))
				off += int64(n)
				if err != nil {
					break
				}
			}
			f.Close()
		}
		if counted >= int64(per) {
			break
		}
		if time.Now().After(deadline) {
			logData, _ := os.ReadFile(logf.Name())
			return r, fmt.Errorf("telegraf wrote %d of %d lines in time; its log: %s", counted, per, strings.TrimSpace(string(logData)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.Elapsed = time.Since(t0)
	if r.CPU, err = bcpu.since(); err != nil {
		return r, err
	}
	if r.RSSKiB, err = procStatusKB(cmd.Process.Pid, "VmHWM"); err != nil {
		return r, err
	}
	if r.DockerdCPU, err = dcpu.since(); err != nil {
		return r, err
	}
	if counted != int64(per) {
		return r, fmt.Errorf("telegraf wrote %d lines, want %d", counted, per)
	}
	m.lg.printf("%s: %+v", r.Name, r)
	return r, nil
}
