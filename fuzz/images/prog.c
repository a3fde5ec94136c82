#include <stdio.h>
#include <stdlib.h>
static const char *NEXT_ID = "id";
__attribute__((noinline)) long leaf(long x) { return x * 3 + (long)NEXT_ID[0]; }
__attribute__((noinline)) long mid(long x) { char buf[64]; for (int i = 0; i < 64; i++) buf[i] = (char)(x + i); return leaf(buf[x & 63]) + 1; }
__attribute__((noinline)) long outer(long x) { return mid(x) * mid(x + 1); }
int main(int argc, char **argv) { printf("%ld\n", outer(argc)); return 0; }
