package conformance

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The ViciStack-style AMI guide's scripts (vicistack/): the Python
// click-to-dial client, the Node.js event monitor and the nc one-liner.

func creds(user string) []string {
	for _, a := range accounts {
		if a.user == user {
			return []string{"AMI_USER=" + a.user, "AMI_SECRET=" + a.secret}
		}
	}
	panic("no account " + user)
}

func (k *kit) guideScripts(t *testing.T) {
	const group = "guide scripts"
	dir, _ := filepath.Abs("vicistack")
	py := filepath.Join(dir, "click_to_dial.py")
	k.flow(t, group, "python click-to-dial", "admin", func(t *testing.T) {
		before := k.s.reached("Originate")
		k.script(t, creds("admin"), map[string][]string{"": {
			"Asterisk Call Manager/",
			"Response: Success\r\nMessage: Authentication accepted",
			"Response: Success\r\nActionID: c2d-1\r\nMessage: Originate successfully queued",
			"Response: Goodbye",
		}}, "python3", py, "Local/200@lab", "100")
		if k.s.reached("Originate") != before+1 {
			t.Fatalf("the PBX did not receive the Originate")
		}
	})
	k.flow(t, group, "python click-to-dial", "viewer", func(t *testing.T) {
		before := k.s.reached("Originate")
		out, err := k.s.run(context.Background(), creds("viewer"), "python3", py, "Local/200@lab", "100")
		if err == nil || !strings.Contains(out, "Response: Error\r\nActionID: c2d-1\r\nMessage: Permission denied") {
			t.Fatalf("want the Originate refused with Permission denied and exit 1 (err %v)\nexchange (the script's output):\n%s", err, indent(out))
		}
		if k.s.reached("Originate") != before {
			t.Fatalf("the denied Originate reached the PBX")
		}
	})

	// The event monitors run at once: each needs a call of the sample
	// traffic (one every few seconds) to begin and end.
	js := filepath.Join(dir, "event_monitor.js")
	var wg sync.WaitGroup
	outs := map[string]string{}
	errs := map[string]error{}
	var mu sync.Mutex
	for _, user := range []string{"admin", "viewer"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := k.s.run(context.Background(), append(creds(user), "MONITOR_SECONDS=20"), "node", js)
			mu.Lock()
			outs[user], errs[user] = out, err
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, user := range []string{"admin", "viewer"} {
		k.flow(t, group, "node event monitor", user, func(t *testing.T) {
			out := outs[user]
			if errs[user] != nil || !strings.Contains(out, "[NEW] ") || !strings.Contains(out, "[HANGUP] ") ||
				!strings.Contains(out, "Response: Success Authentication accepted") {
				t.Fatalf("want login, then Newchannel and Hangup events (err %v)\nexchange (the script's output):\n%s", errs[user], indent(out))
			}
		})
	}

	sh := filepath.Join(dir, "count_channels.sh")
	k.flow(t, group, "nc one-liner counting channels", "admin", func(t *testing.T) {
		// A 30 s call, so that there are channels to count.
		c := dialAMI(t, k.s.ami)
		id := c.action("Action", "Login", "Username", "admin", "Secret", "adminpass", "Events", "off")
		if _, _, err := c.response(id); err != nil {
			t.Fatal(err)
		}
		id = c.action("Action", "Originate", "Channel", "Local/200@lab", "Application", "Wait", "Data", "30")
		if resp, _, err := c.response(id); err != nil || resp.Get("Response") != "Success" {
			t.Fatalf("originate: %v\nexchange:\n%s", err, c.exchange())
		}
		out, err := k.s.run(context.Background(), creds("admin"), "bash", sh)
		m := regexp.MustCompile(`channels: (\d+)\nListItems: (\d+)`).FindStringSubmatch(out)
		if err != nil || m == nil || m[1] != m[2] || m[1] == "0" || m[1] == "1" {
			t.Fatalf("want \"channels: N\" equal to the list's ListItems, N >= 2 (err %v)\nexchange (the script's output):\n%s", err, indent(out))
		}
		c.action("Action", "Hangup", "Channel", "/^Local\\/200@lab-/")
	})
}
