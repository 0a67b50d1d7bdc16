// The README example: the per-layer top-1 tokens of a prompt through a lens, then a greedy
// generation read out at layer 3, against the server at $LENSD_ADDRESS with $LENSD_TOKEN.
//
//	go run ./example -lens tuned "And God said, Let there be light: and there was"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	lensd "github.com/lensd/lensd/clients/go"
)

func main() {
	lens := flag.String("lens", "logit", "logit, or a loaded tuned lens")
	flag.Parse()
	prompt := "And God said, Let there be light: and there was"
	if flag.NArg() > 0 {
		prompt = strings.Join(flag.Args(), " ")
	}
	client, err := lensd.Dial("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := context.Background()
	result, err := client.Decode(ctx, lensd.Text(prompt), lensd.DecodeOptions{Lens: *lens, TopK: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i, label := range result.RowLabels() {
		fmt.Printf("%-7s %s\n", label, strings.Join(result.Top1(i), " | "))
	}
	layer := int64(3)
	fmt.Print(prompt)
	for token, err := range client.Generate(ctx, lensd.Text(prompt),
		lensd.GenerateOptions{Lens: *lens, Layer: &layer, Greedy: true, MaxNewTokens: 12}) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "\n", err)
			os.Exit(1)
		}
		fmt.Print(token.Token.Text)
	}
	fmt.Println()
}
