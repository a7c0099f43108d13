"""One-line functional problems (complete `class Solution`), LeetCode style.

The starter code is generated from `func_name`, `params` and `returns`, so
the signature the model sees is the one the grader calls.
"""

from vpd_jax.data.bundled._spec import FunctionalSpec as F

PROBLEMS = [
    F("vpd_f01", "Largest Number", "train", "easy",
      "Given a non-empty list of integers nums, return the largest value.",
      "maxOfList", "nums: List[int]", "int",
      (([3, 9, 2],), 9),
      (([5],), ([-1, -5, -3],), ([2, 2, 2],), ([0, -1],), ([1, 2, 3, 100],)),
      "class Solution:\n    def maxOfList(self, nums):\n        return max(nums)\n"),
    F("vpd_f02", "Is Even", "train", "easy",
      "Given an integer n, return true if n is even and false otherwise.",
      "isEven", "n: int", "bool",
      ((4,), True),
      ((7,), (0,), (-2,), (-3,), (1000001,)),
      "class Solution:\n    def isEven(self, n):\n        return n % 2 == 0\n"),
    F("vpd_f03", "Reverse String", "eval", "easy",
      "Given a string s, return s reversed.",
      "reverseString", "s: str", "str",
      (("hello",), "olleh"),
      (("",), ("a",), ("ab",), ("racecar",), ("Hi there",)),
      "class Solution:\n    def reverseString(self, s):\n        return s[::-1]\n"),
    F("vpd_f04", "Vowel Count", "train", "easy",
      "Given a string s of lowercase letters, return how many of its characters "
      "are vowels (a, e, i, o, u).",
      "countVowels", "s: str", "int",
      (("banana",), 3),
      (("",), ("xyz",), ("aeiou",), ("queue",), ("strength",)),
      "class Solution:\n    def countVowels(self, s):\n"
      "        return sum(c in 'aeiou' for c in s)\n"),
    F("vpd_f05", "Sum of a List", "train", "easy",
      "Given a list of integers nums, return their sum (0 for an empty list).",
      "sumList", "nums: List[int]", "int",
      (([1, 2, 3],), 6),
      (([],), ([-5],), ([1, -1, 1, -1],), ([1000000000, 1000000000],),
       ([0, 0, 7],)),
      "class Solution:\n    def sumList(self, nums):\n        return sum(nums)\n"),
    F("vpd_f06", "Smallest Number", "eval", "easy",
      "Given a non-empty list of integers nums, return the smallest value.",
      "minOfList", "nums: List[int]", "int",
      (([4, 2, 8],), 2),
      (([1],), ([-1, -9, 3],), ([5, 5],), ([100, 99, 98, 97],), ([0, 1],)),
      "class Solution:\n    def minOfList(self, nums):\n        return min(nums)\n"),
    F("vpd_f07", "Count Positives", "train", "easy",
      "Given a list of integers nums, return how many of them are greater than "
      "zero.",
      "countPositives", "nums: List[int]", "int",
      (([1, -2, 3, 0],), 2),
      (([],), ([0, 0],), ([-1, -2],), ([5, 6, 7],), ([-1, 1, -1, 1],)),
      "class Solution:\n    def countPositives(self, nums):\n"
      "        return sum(1 for x in nums if x > 0)\n"),
    F("vpd_f08", "Double Each", "train", "easy",
      "Given a list of integers nums, return a new list where every number is "
      "multiplied by 2.",
      "doubleEach", "nums: List[int]", "List[int]",
      (([1, 2, 3],), [2, 4, 6]),
      (([],), ([0],), ([-4, 5],), ([100000],), ([1, 1, 1, 1],)),
      "class Solution:\n    def doubleEach(self, nums):\n"
      "        return [2 * x for x in nums]\n"),
    F("vpd_f09", "Palindrome String", "eval", "easy",
      "Given a string s, return true if s reads the same forwards and "
      "backwards, otherwise false.",
      "isPalindrome", "s: str", "bool",
      (("abba",), True),
      (("abc",), ("",), ("a",), ("abcba",), ("ab",)),
      "class Solution:\n    def isPalindrome(self, s):\n        return s == s[::-1]\n"),
    F("vpd_f10", "Add Two Numbers", "train", "easy",
      "Given two integers a and b, return a + b.",
      "addTwo", "a: int, b: int", "int",
      ((2, 3), 5),
      ((0, 0), (-1, 1), (-5, -5), (123456789, 987654321), (7, -10)),
      "class Solution:\n    def addTwo(self, a, b):\n        return a + b\n"),
    F("vpd_f11", "Count a Character", "train", "easy",
      "Given a string s and a single character c, return how many times c "
      "appears in s.",
      "countChar", "s: str, c: str", "int",
      (("banana", "a"), 3),
      (("", "a"), ("abc", "z"), ("aaaa", "a"), ("Aa", "a"), ("hello world", "o")),
      "class Solution:\n    def countChar(self, s, c):\n        return s.count(c)\n"),
    F("vpd_f12", "Uppercase", "eval", "easy",
      "Given a string s, return it with every letter in uppercase.",
      "toUpper", "s: str", "str",
      (("hello",), "HELLO"),
      (("",), ("ABC",), ("mixed Case 1",), ("z",), ("a-b_c",)),
      "class Solution:\n    def toUpper(self, s):\n        return s.upper()\n"),
    F("vpd_f13", "Sum of Squares", "train", "easy",
      "Given an integer n (n >= 0), return 1*1 + 2*2 + ... + n*n (0 when n is "
      "0).",
      "sumOfSquares", "n: int", "int",
      ((3,), 14),
      ((0,), (1,), (2,), (10,), (1000,)),
      "class Solution:\n    def sumOfSquares(self, n):\n"
      "        return sum(i * i for i in range(1, n + 1))\n"),
    F("vpd_f14", "Contains Value", "train", "easy",
      "Given a list of integers nums and an integer target, return true if "
      "target is in nums, otherwise false.",
      "containsValue", "nums: List[int], target: int", "bool",
      (([1, 2, 3], 2), True),
      (([], 1), ([1, 2, 3], 4), ([-1], -1), ([5, 5, 5], 5), ([0, 1], -1)),
      "class Solution:\n    def containsValue(self, nums, target):\n"
      "        return target in nums\n"),
    F("vpd_f15", "Largest of Three", "train", "easy",
      "Given three integers a, b and c, return the largest of them.",
      "maxOfThree", "a: int, b: int, c: int", "int",
      ((1, 7, 3), 7),
      ((0, 0, 0), (-1, -2, -3), (5, 4, 5), (9, 1, 2), (1, 2, 9)),
      "class Solution:\n    def maxOfThree(self, a, b, c):\n"
      "        return max(a, b, c)\n"),
]
