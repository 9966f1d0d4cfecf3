/* hello-c: a C program built against wasi-libc.
 *   hello-c          prints "hello from C on wasmpod"
 *   hello-c WORD     then prints WORD on its own line
 */
#include <stdio.h>

int main(int argc, char **argv) {
    printf("hello from C on wasmpod\n");
    if (argc > 1)
        printf("%s\n", argv[1]);
    return 0;
}
