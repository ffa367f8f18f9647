package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

type ev struct {
	t       time.Duration
	subj    string
	reply   string
	n       int
}

func main() {
	nc, err := nats.Connect(os.Args[1])
	if err != nil {
		panic(err)
	}
	var evs []ev
	var t0 time.Time
	ch := make(chan *nats.Msg, 10000)
	sub, _ := nc.ChanSubscribe(">", ch)
	_ = sub
	nc.Flush()
	body := bytes.Repeat([]byte("a"), 1000)
	jb := append(append([]byte(`{"x":"`), body...), '"', '}')
	for i := 0; i < 50; i++ {
		http.Post(os.Args[2], "application/json", bytes.NewReader(jb))
	}
	time.Sleep(200 * time.Millisecond)
	for len(ch) > 0 {
		<-ch
	}
	var lat []time.Duration
	for i := 0; i < 20; i++ {
		t0 = time.Now()
		resp, err := http.Post(os.Args[2], "application/json", bytes.NewReader(jb))
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body); resp.Body.Close()
		lat = append(lat, time.Since(t0))
		time.Sleep(50 * time.Millisecond)
		if i == 19 {
		drain:
			for {
				select {
				case m := <-ch:
					_ = m
				default:
					break drain
				}
			}
		}
	}
	fmt.Println(lat)
	// one traced run
	go func() {}()
	done := make(chan struct{})
	go func() {
		for m := range ch {
			evs = append(evs, ev{time.Since(t0), m.Subject, m.Reply, len(m.Data)})
			if len(evs) > 200 { break }
		}
	}()
	t0 = time.Now()
	resp, _ := http.Post(os.Args[2], "application/json", bytes.NewReader(jb))
	io.Copy(io.Discard, resp.Body); resp.Body.Close()
	fmt.Println("total", time.Since(t0))
	time.Sleep(300 * time.Millisecond)
	close(done)
	for _, e := range evs {
		fmt.Printf("%8d µs %-70s %-40s %d\n", e.t.Microseconds(), e.subj, e.reply, e.n)
	}
}
