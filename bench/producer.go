package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// producerEnv, set to a JSON producerSpec, makes a process that links this
// package the Kafka latency scenario's producer: see ProducerChild.
const producerEnv = "SQUALL_BENCH_PRODUCER"

// producerSpec is what the Kafka latency scenario asks of its producer.
type producerSpec struct {
	Addr string `json:"addr"`
	Keys int    `json:"keys"`
	Rate int    `json:"rate"` // records (one event each) per second
	// The producer warms up until MeasureFrom - 500ms, pauses, then
	// produces from MeasureFrom (Unix µs) for Measure.
	MeasureFrom int64         `json:"measure_from_us"`
	Measure     time.Duration `json:"measure"`
}

// producerResult is what the producer reports on its standard output.
type producerResult struct {
	Sent int      `json:"sent"` // records produced while measuring
	Size int      `json:"size"` // bytes per record value
	Ack  *Latency `json:"ack"`  // produce → ack of the measured records
}

// ProducerChild runs the Kafka latency scenario's producer and exits when
// this process was started as one (by the scenario, which re-executes its
// own binary); otherwise it returns at once. The squall-bench command and
// the package's tests call it first thing.
//
// The producer runs in a process of its own, as producers do, so that its
// allocations and garbage collection are not the node's: in one process
// they were ~30% of its allocations and lengthened its collections.
func ProducerChild() {
	spec := os.Getenv(producerEnv)
	if spec == "" {
		return
	}
	if err := runProducer(spec); err != nil {
		fmt.Fprintln(os.Stderr, "squall-bench producer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runProducer produces records of one event each, its value the event JSON
// whose "value" is the wall-clock time of the send in Unix µs, and prints
// a producerResult.
func runProducer(specJSON string) error {
	var spec producerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("%s: %w", producerEnv, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(spec.Addr), kgo.DefaultProduceTopic(benchTopic),
		kgo.ProducerLinger(0), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	// The keys' names are made once: the load generator shares the cores
	// with what it measures.
	names := make([][]byte, spec.Keys)
	for i := range names {
		names[i] = []byte(keyName(i))
	}
	var ack Histogram
	var measuring atomic.Bool
	size := 0
	produce := func(j int) {
		sent := time.Now()
		us := sent.UnixMicro()
		k := names[j%spec.Keys]
		v := make([]byte, 0, 96)
		v = append(append(append(v, `{"key":"`...), k...), `","ts":`...)
		v = strconv.AppendInt(v, t0+int64(j/spec.Keys)*1000, 10)
		v = strconv.AppendInt(append(v, `,"value":`...), us, 10)
		v = append(appendID(v, j), '}')
		size = len(v)
		m := measuring.Load()
		cl.Produce(context.Background(), &kgo.Record{Key: k, Value: v}, func(_ *kgo.Record, err error) {
			if m && err == nil {
				ack.Record(time.Since(sent))
			}
		})
	}
	from := time.UnixMicro(spec.MeasureFrom)
	if warm := time.Until(from) - 500*time.Millisecond; warm > 0 {
		pace(spec.Rate, warm, produce)
	}
	time.Sleep(time.Until(from))
	measuring.Store(true)
	sent := pace(spec.Rate, spec.Measure, produce)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(producerResult{Sent: sent, Size: size, Ack: ack.Latency(0)})
}

// startProducer starts the producer child on broker addr: it produces
// rate records a second until from, then for d; wait returns its result
// once it has produced and flushed them all.
func startProducer(ctx context.Context, addr string, keys, rate int, from time.Time, d time.Duration) (wait func() (*producerResult, error), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, err := json.Marshal(producerSpec{Addr: addr, Keys: keys, Rate: rate, MeasureFrom: from.UnixMicro(), Measure: d})
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), producerEnv+"="+string(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the harness
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	return func() (*producerResult, error) {
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("producer: %w: %s", err, bytes.TrimSpace(errb.Bytes()))
		}
		var res producerResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			return nil, fmt.Errorf("producer: its result %q: %w", out.String(), err)
		}
		if res.Ack == nil {
			return nil, errors.New("producer: no ack latency")
		}
		return &res, nil
	}, nil
}
