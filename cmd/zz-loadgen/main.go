package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	url := os.Args[1]
	secs, _ := strconv.Atoi(os.Args[2])
	rng := rand.New(rand.NewPCG(1, 2))
	var bodies [][]byte
	for range 256 {
		var b []byte
		for range 100 {
			b = fmt.Appendf(b, `{"key":"host-%05d.cpu","ts":%d,"value":%d.5}`+"\n", rng.IntN(100000), time.Now().UnixMilli(), rng.IntN(100))
		}
		bodies = append(bodies, b)
	}
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	start := time.Now()
	for i := 0; time.Since(start) < time.Duration(secs)*time.Second; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Millisecond)))
		go func() {
			resp, err := cl.Post(url, "application/x-ndjson", bytes.NewReader(bodies[i%256]))
			if err != nil {
				fmt.Println(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
}
